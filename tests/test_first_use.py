"""What a new user meets first: a pair's repr, evaluate on classes the models do not know, the
README's evaluate formats, and usage errors that come before torch is imported."""
from __future__ import annotations

from nc_viz.models import count_parameters
from nc_viz.pair import load_model_pair


def test_repr_of_a_pair_is_one_line_per_model(small_pair):
    pair = load_model_pair(*small_pair, device="cpu")
    lines = repr(pair).splitlines()
    assert lines[0] == "ModelPair(" and lines[-1] == ")" and len(lines) == 4
    for line, (role, loaded) in zip(lines[1:3], pair.roles.items()):
        assert line.startswith(f"  {role}: {loaded.meta.arch}")
        assert f"{count_parameters(loaded.model):,} parameters" in line and str(loaded.path) in line
    assert "reduction 8, placement stages" in lines[2] and "Conv2d" not in repr(pair)
    assert "\n" not in repr(pair.baseline)
