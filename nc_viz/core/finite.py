"""Models whose outputs are not finite (NaN or infinite weights): said once on the terminal
and flagged in the summary, never a crash. No torch here."""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

from .roles import ROLES

log = logging.getLogger(__name__)

SUMMARY_KEY = "non_finite_outputs"


def _finite(prediction: Mapping[str, Any] | None) -> bool:
    value = (prediction or {}).get("probability")
    return not isinstance(value, float) or math.isfinite(value)


def non_finite_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Per model role, how many images got a probability that is not finite."""
    return {role: sum(not _finite(r.get(role)) for r in records) for role in ROLES}


def warn_non_finite(counts: Mapping[str, int], where: str) -> None:
    """One warning line per model whose outputs were not finite."""
    for role, count in counts.items():
        if count:
            log.warning("%s: the %s model's outputs were not finite (NaN or infinite) for %d image(s): "
                        "check its weights", where, "NC" if role == "nc" else role, count)


def flag_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Add `non_finite_outputs` to a batch summary when a model's outputs were not finite, and warn."""
    counts = non_finite_counts(summary["images"])
    if any(counts.values()):
        summary[SUMMARY_KEY] = counts
        warn_non_finite(counts, str(summary.get("input_dir", "batch")))
    return summary


def warn_results(results: Sequence[Any], where: str) -> None:
    """Warn about PairResults (compare, neurons) whose probabilities are not finite."""
    counts = {role: sum(not math.isfinite(p) for r in results for p in r.roles[role].out.target_prob.tolist())
              for role in ROLES}
    warn_non_finite(counts, where)
