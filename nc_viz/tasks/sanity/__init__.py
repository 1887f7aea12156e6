"""`ncviz sanity`: the model parameter randomisation test of Adebayo et al. ("Sanity Checks for
Saliency Maps", NeurIPS 2018) for both models of a pair (README "`ncviz sanity`").

A map that barely changes when the network's weights are replaced by random ones shows the
input, not what the model learned. Starting from the classifier and moving towards the input,
one more layer or block is re-initialised at each step (`cascading`), or one at a time
(`independent`); the map of the same class on the same images is compared with the original
map after each step (`metrics.similarity`), for the baseline and the NC model on one schedule,
NC minus baseline with a paired bootstrap interval over images.

Modules: `schedule` (the steps, the working copies and their seeded random weights), `run`
(the batched pass on the engine's stream, torchrun shards), `report` (tables, records, JSON,
figures), `workflow` (`run_sanity`: the whole command).
"""
from __future__ import annotations

from .run import SanityOptions, SanityResult, sanity_dataset
from .schedule import GRANULARITIES, MODES, Randomiser, Step, build_schedule, model_units
from .workflow import SanityData, SanityOutputs, run_sanity

__all__ = ["GRANULARITIES", "MODES", "Randomiser", "SanityData", "SanityOptions", "SanityOutputs", "SanityResult",
           "Step", "build_schedule", "model_units", "run_sanity", "sanity_dataset"]
