"""The two models of a pair, by role: the one list of roles (no torch here).

Results of the pair are keyed by role (`PairResult.roles`, `ModelPair.roles`, the evaluation's
accumulators, records and reports), in this order, so that code over both models is one loop.
"""
from __future__ import annotations

ROLES: tuple[str, ...] = ("baseline", "nc")
ROLE_LABELS: dict[str, str] = {"baseline": "Baseline", "nc": "NC"}  # how a figure or page names them
