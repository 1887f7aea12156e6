"""`ncviz evaluate`: both models on an annotated data set, in the field's protocol
(clovaai/wsolevaluation; README "`ncviz evaluate`").

Every image is resized to S x S without a crop (S = the models' input size), its boxes with it
(`datasets.boxes_at_size`, the reference's `resize_bbox`) and its masks (nearest, as OpenCV's
`INTER_NEAREST`). Each model explains the true class (`map_class="true"`, default) or its own
prediction; its raw CAM is resized to S x S (bicubic) and min-max normalised exactly as
clovaai/wsolevaluation's `inference.py` does (`metrics.wsol`), then scored: MaxBoxAcc,
MaxBoxAccV2, GT-known / Top-1 Loc, PxAP with masks; the share of positive CAM energy inside the
ground truth, the pointing game, multi-instance coverage; neuron diversity and the published
'Corr'.

It runs on the streaming engine of `nc_viz.engine`, as `batch` does: decoding in DataLoader
workers, batched forward passes on the device (autocast with `precision`, out-of-memory
halving), torchrun shards. Counts and histograms are accumulated (and merged exactly across
ranks); per-image numbers stream to a records file, and the per-image threshold outcomes
(bit-packed, 500 bytes per image and model) to a raw file, read back once for the paired
bootstrap of `metrics.bootstrap`: memory stays flat over the data set.

Modules: `options`, `decode` (the workers' side), `score` (forward + one image's numbers),
`outcomes` (the outcomes on disk), `merge` (records of the ranks), `summary`, `scratch` (the
ranks' scratch folders), `run`, `workflow` (`run_evaluate`: the whole command, outputs and
report included).
"""
from __future__ import annotations

from .decode import EvalImages, EvalItem, nearest_like_cv2
from .options import MAP_CLASSES, MEAN_METRICS, PERCENT, RECORD_METRICS, ROLES, EvalOptions
from .run import MetricConsumer, RankPart, evaluate_dataset
from .score import ForwardBoth, ModelTally, score_image
from .summary import Evaluation
from .workflow import EvalData, EvalEvents, EvalOutputs, run_evaluate

__all__ = ["EvalData", "EvalEvents", "EvalImages", "EvalItem", "EvalOptions", "EvalOutputs", "Evaluation",
           "ForwardBoth", "MAP_CLASSES", "MEAN_METRICS", "MetricConsumer", "ModelTally", "PERCENT", "RECORD_METRICS",
           "ROLES", "RankPart", "evaluate_dataset", "nearest_like_cv2", "run_evaluate", "score_image"]
