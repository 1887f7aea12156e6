"""`EvalOptions` and the names of what `evaluate` reports."""
from __future__ import annotations

from dataclasses import dataclass

from ...pair import autocast_dtype
from ...core.errors import ParameterError, UsageError
from ...core.roles import ROLES  # noqa: F401 - importable from here as before
from ...metrics.specs import mean_columns, percent_keys, record_columns

MAP_CLASSES = ("true", "predicted")
# derived from the metric registry (metrics.specs), kept importable from here:
RECORD_METRICS = record_columns()   # records.csv's metric columns without faithfulness metrics
MEAN_METRICS = mean_columns()       # per-image record column -> result key; their mean is the data set's number
PERCENT = percent_keys()            # result keys in percent, as the reference and Grad-CAM++ report them


def record_metrics(options: "EvalOptions") -> tuple[str, ...]:
    """records.csv's metric columns for this run."""
    return record_columns(options.faithfulness)


def mean_metrics(options: "EvalOptions") -> dict[str, str]:
    """Record column -> result key of every number that is a mean over images, for this run."""
    return mean_columns(options.faithfulness)


@dataclass(frozen=True)
class EvalOptions:
    """How `evaluate_dataset` scores (the CLI's flags)."""

    top_k: int = 8
    map_class: str = "true"
    fraction: float = 0.5
    pointing_tolerance: float | None = None   # pixels at S; None: 15 px at S = 224, scaled with S
    top_q: float = 0.2
    batch_size: int | None = None             # None: default_batch_size(the models' device)
    workers: int | None = None                # decode workers; None: default_workers()
    limit: int | None = None
    bootstrap: int = 1000                     # resamples of the paired bootstrap; 0: no intervals
    seed: int = 0
    precision: str = "fp32"                   # fp32, bf16 or fp16 (autocast of the forward passes)
    score_threads: int | None = None          # None: default_score_threads(device); 0: score inline;
                                              # N >= 1: a chunk is scored while the next is forwarded,
                                              # its images' maps in N threads
    faithfulness: tuple[str, ...] = ()        # metric names (metrics.faithfulness.FAITHFULNESS)
    steps: int | None = None                  # deletion/insertion steps; None: RISE's S pixels per step

    def check(self) -> None:
        """Option checks that need no model (UsageError naming the flag)."""
        if self.map_class not in MAP_CLASSES:
            raise ParameterError("map_class", f"{{param}} {self.map_class}: choose from {', '.join(MAP_CLASSES)}")
        if not 0.0 < self.fraction <= 1.0:
            raise ParameterError("fraction", f"{{param}} {self.fraction}: use a share in (0, 1]")
        if self.pointing_tolerance is not None and self.pointing_tolerance < 0:
            raise ParameterError("pointing_tolerance", f"{{param}} {self.pointing_tolerance}: must be 0 or more")
        if self.bootstrap < 0:
            raise ParameterError("bootstrap", f"{{param}} {self.bootstrap}: must be 0 (no intervals) or more")
        if self.batch_size is not None and self.batch_size < 1:
            raise ParameterError("batch_size", f"{{param}} {self.batch_size}: must be at least 1")
        if self.score_threads is not None and self.score_threads < 0:
            raise ParameterError("score_threads", f"{{param}} {self.score_threads}: must be 0 (inline) or more")
        autocast_dtype(self.precision)
        from ...metrics.faithfulness import parse_faithfulness

        if list(self.faithfulness) != parse_faithfulness(list(self.faithfulness)):
            raise ParameterError("faithfulness", f"{{param}} {','.join(self.faithfulness)}: "
                                                 f"give each name once, in any order")
        if self.steps is not None and self.steps < 1:
            raise ParameterError("steps", f"{{param}} {self.steps}: must be at least 1")
