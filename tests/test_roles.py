"""A pair's result is keyed by role: slicing, merging and saving reach both models the same way,
and the pair itself holds its models by role."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nc_viz.cams.compute import compute_cams
from nc_viz.pair import ModelPair, PairResult, RoleResult, load_model_pair, maps_arrays
from nc_viz.core.roles import ROLES
from nc_viz.tasks.figures import merge_results


@pytest.fixture(scope="module")
def pair(small_pair):
    return load_model_pair(*small_pair, device="cpu")


def _arrays(value):
    """Every tensor and array of a PairResult by dotted name (None kept)."""
    if dataclasses.is_dataclass(value):
        found = {}
        for f in dataclasses.fields(value):
            for key, item in _arrays(getattr(value, f.name)).items():
                found[f"{f.name}.{key}" if key else f.name] = item
        return found
    if isinstance(value, dict):
        return {f"{k}.{key}" if key else k: item for k, v in value.items() for key, item in _arrays(v).items()}
    return {"": value}


def _equal(a: PairResult, b: PairResult) -> bool:
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    for key in left:
        x, y = left[key], right[key]
        if x is None or y is None:
            assert x is None and y is None, key
        else:
            assert type(x) is type(y) and np.array_equal(np.asarray(x), np.asarray(y)), key
    return True


def test_results_are_keyed_by_role_and_nothing_else(pair):
    x = torch.randn(3, 3, 32, 32)
    result = pair.run(x, top_k=4)
    assert tuple(result.roles) == ROLES == tuple(pair.roles)
    for role in ROLES:
        part = result.roles[role]
        expected = compute_cams(pair.roles[role].model, x, top_k=4)
        torch.testing.assert_close(part.out.cam, expected.cam)
        torch.testing.assert_close(part.out.neuron_maps, expected.neuron_maps)
        assert part.heat.shape == (3, 32, 32) and part.neuron_heat.shape == (3, 4, 32, 32)
        assert part.out.cam.device.type == "cpu"
        assert not hasattr(result, role) and not hasattr(result, f"{role}_heat")  # no twin fields
        assert not hasattr(result, f"{role}_neuron_heat")
    plain = pair.run(torch.randn(2, 3, 32, 32))
    assert all(plain.roles[role].neuron_heat is None for role in ROLES)


def test_a_pair_holds_its_models_by_role(pair):
    """`roles` is the pair's field (the baseline's metadata are the pair's); a pair must have
    both roles, in order."""
    assert [f.name for f in dataclasses.fields(ModelPair)][0] == "roles"
    assert not hasattr(pair, "nc")
    assert pair.baseline is pair.roles["baseline"] and pair.device == pair.roles["baseline"].device
    swapped = ModelPair({"baseline": pair.roles["nc"], "nc": pair.roles["baseline"]})
    assert swapped.baseline is pair.roles["nc"]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(swapped.run(x).roles["nc"].out.cam, pair.run(x).roles["baseline"].out.cam)
    for roles in ({"baseline": pair.baseline}, {"nc": pair.roles["nc"], "baseline": pair.baseline}):
        with pytest.raises(ValueError, match="a pair's roles are baseline, nc in that order"):
            ModelPair(roles)


@pytest.mark.parametrize("top_k", [0, 3])
def test_images_cut_every_array_and_concat_puts_them_back(pair, top_k):
    result = pair.run(torch.randn(3, 3, 32, 32), top_k=top_k)
    parts = [result.images(i) for i in range(3)]
    assert all(len(p.pictures) == 1 and p.roles["nc"].out.cam.shape[0] == 1 for p in parts)
    assert _equal(PairResult.concat(parts), result)
    assert _equal(merge_results([result.images(slice(0, 2)), result.images(2)]), result)


def test_a_copied_image_owns_its_memory(pair):
    result = pair.run(torch.randn(2, 3, 32, 32), top_k=2)
    shared, owned = result.images(1), result.images(1, copy=True)
    assert shared.roles["nc"].heat.untyped_storage().data_ptr() == result.roles["nc"].heat.untyped_storage().data_ptr()
    assert owned.roles["nc"].heat.untyped_storage().nbytes() == owned.roles["nc"].heat.nbytes
    assert owned.pictures.base is None and _equal(owned, shared)


def test_save_maps_keys_keep_their_order(pair):
    keys = ["input", *(f"{role}_{name}" for name in ("logits", "class", "cam", "heatmap") for role in ROLES)]
    plain = maps_arrays([pair.run(torch.randn(2, 3, 32, 32))])
    assert list(plain) == keys
    neurons = maps_arrays([pair.run(torch.randn(2, 3, 32, 32), top_k=2), pair.run(torch.randn(1, 3, 32, 32), top_k=2)])
    assert list(neurons) == keys + [f"{role}_{name}" for name in ("neurons", "neuron_ids", "contrib") for role in ROLES]
    assert neurons["nc_neuron_ids"].dtype == np.int64 and neurons["baseline_neurons"].shape[:2] == (3, 2)


def test_a_role_result_is_a_plain_dataclass():
    heat = torch.zeros(1, 2, 2)
    part = RoleResult(out=None, heat=heat)  # type: ignore[arg-type]
    assert part.neuron_heat is None and [f.name for f in dataclasses.fields(part)] == ["out", "heat", "neuron_heat"]
