"""Every checkpoint format the README's "Checkpoints" lists, arch inference, and the errors for what does not fit."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from nc_viz.models.checkpoints import ModelMeta, load_checkpoint, save_checkpoint
from nc_viz.models.preprocessing import Preprocess
from nc_viz.core.errors import CheckpointError
from nc_viz.models import build_model


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.fixture(scope="module")
def resnet18_nc() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18_nc", 10, input_size=64).eval()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_own_format_round_trip_needs_no_flags(tmp_path, resnet18_nc, suffix):
    meta = ModelMeta(arch="resnet18_nc", num_classes=10, class_names=tuple("abcdefghij"), preprocess=Preprocess(64),
                     reduction=8, placement="stages")
    path = save_checkpoint(tmp_path / f"m{suffix}", resnet18_nc, meta)
    loaded = load_checkpoint(path)
    assert loaded.meta == meta
    _same_outputs(resnet18_nc, loaded.model, 64)


def test_plain_torchvision_state_dict_infers_arch_and_classes(tmp_path):
    model = build_model("resnet18", 7)
    path = tmp_path / "tv.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert loaded.meta.arch == "resnet18" and loaded.meta.num_classes == 7
    assert loaded.meta.input_size == 224
    _same_outputs(model, loaded.model, 64)


def test_imagenet_class_names_come_from_torchvision_metadata(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), path)
    meta = load_checkpoint(path).meta
    assert len(meta.class_names) == 1000 and meta.class_names[0] == "tench"


def test_published_training_checkpoint_loads_into_the_nc_model(tmp_path, resnet18_nc, caplog):
    state = {f"module.net.{k}": v for k, v in resnet18_nc.state_dict().items()}
    # weights the published layer carries but never uses
    state["module.net.layer1.cn.ln.weight"] = torch.ones(4)
    state["module.net.layer2.cn.downsample.weight"] = torch.ones(4)
    state["module.net.layer3.cn.upsample.0.weight"] = torch.ones(4)
    path = tmp_path / "published.pth"
    torch.save({"model": state, "arch": "resnet18_nc", "epoch": 90, "best_acc1": 71.2}, path)
    loaded = load_checkpoint(path)
    assert loaded.meta.arch == "resnet18_nc"
    assert loaded.meta.input_size == 64 and loaded.meta.reduction == 8 and loaded.meta.placement == "stages"
    _same_outputs(resnet18_nc, loaded.model, 64)
    assert "never uses" in caplog.text


def test_blocks_placement_and_reduction_are_read_from_the_keys(tmp_path):
    model = build_model("resnet18_nc", 5, input_size=64, reduction=4, placement="blocks")
    path = tmp_path / "blocks.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    meta = load_checkpoint(path).meta
    assert (meta.arch, meta.placement, meta.reduction) == ("resnet18_nc", "blocks", 4)


def test_plain_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    model = build_model("resnet20", 10)
    path = tmp_path / "c.safetensors"
    save_file(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert loaded.meta.arch == "resnet20" and loaded.meta.input_size == 32
    _same_outputs(model, loaded.model, 32)


def test_missing_bn_counters_are_tolerated(tmp_path):
    model = build_model("resnet20", 10)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(state, path)
    _same_outputs(model, load_checkpoint(path).model, 32)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="junk.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, reason", [
    (b"", "an empty file"),
    (b"just some text", "neither a torch.save archive nor a pickle"),
    (b"\x89PNG\r\n\x1a\n....", "neither a torch.save archive nor a pickle"),
    (pickle.dumps({"a": 1}, protocol=4), "a plain pickle of protocol 4, not a torch.save file"),
    (pickle.dumps({"a": 1}, protocol=2), "magic number"),  # read as a legacy torch.save file
])
def test_a_file_that_is_no_checkpoint_gets_a_short_reason(tmp_path, content, reason):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert text.startswith(f"{path}: not a readable PyTorch checkpoint (") and reason in text
    assert "weights_only" not in text and "\n" not in text  # no advice to unpickle code


def test_wrong_arch_names_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(build_model("resnet18", 10).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, arch="resnet34")
    text = str(err.value)
    assert "missing layer1.2.conv1.weight" in text and "r18.pth" in text and "\n" not in text


def test_nc_weights_into_a_plain_arch_suggest_the_nc_variant(tmp_path, resnet18_nc):
    path = tmp_path / "nc.pth"
    torch.save(resnet18_nc.state_dict(), path)
    with pytest.raises(CheckpointError, match="use arch resnet18_nc"):
        load_checkpoint(path, arch="resnet18")


def test_wrong_class_count_names_the_shape(tmp_path):
    model = build_model("resnet20", 10)
    meta = ModelMeta(arch="resnet20", num_classes=12, preprocess=Preprocess(32))
    state = model.state_dict()
    path = tmp_path / "x.pt"
    torch.save({"format": "ncviz", "version": 1, "state_dict": state, "meta": meta.to_dict()}, path)
    with pytest.raises(CheckpointError, match=r"fc.weight has shape \(10, 64\).*classes"):
        load_checkpoint(path)


def test_unknown_key_layout_asks_for_arch(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3), "stem.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="pass arch"):
        load_checkpoint(path)


@pytest.mark.slow
def test_resnet50_and_resnet101_are_told_apart_by_their_blocks(tmp_path):
    """The real ImageNet shapes: ResNet-101 and ResNet-101-NC at 224 px, published format."""
    for arch in ("resnet50", "resnet101"):
        path = tmp_path / f"{arch}.pth"
        torch.save(build_model(arch, 1000).state_dict(), path)
        assert load_checkpoint(path).meta.arch == arch
    nc = build_model("resnet101_nc", 1000)
    path = tmp_path / "nc101.pth"
    torch.save({"model": {f"module.{k}": v for k, v in nc.state_dict().items()}, "epoch": 1}, path)
    loaded = load_checkpoint(path)
    assert (loaded.meta.arch, loaded.meta.input_size, loaded.meta.reduction) == ("resnet101_nc", 224, 8)
    from nc_viz.cams.compute import compute_cams

    x = torch.randn(1, 3, 224, 224)
    out = compute_cams(loaded.model, x, top_k=8)
    assert out.cam.shape == (1, 7, 7) and out.neuron_maps.shape == (1, 8, 7, 7)
    torch.testing.assert_close(out.contributions.sum(1) + loaded.model.fc.bias[out.target],
                               out.logits.gather(1, out.target[:, None])[:, 0], atol=1e-3, rtol=1e-4)


def test_half_precision_file_loads_into_a_float32_model(tmp_path):
    model = build_model("resnet20", 10)
    meta = ModelMeta(arch="resnet20", num_classes=10, preprocess=Preprocess(32))
    full = save_checkpoint(tmp_path / "full.pt", model, meta)
    half = save_checkpoint(tmp_path / "half.pt", model, meta, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half).model
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x), atol=2e-2, rtol=2e-2)


def test_published_arch_field_names_the_plain_network_and_the_keys_say_nc(tmp_path):
    """The published train.py saves `arch` as the plain name; NC blocks are a separate flag."""
    torch.manual_seed(0)
    model = build_model("resnet20_nc", 100).eval()
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "arch": "resnet20",
                "epoch": 160}, path)
    loaded = load_checkpoint(path)
    assert (loaded.meta.arch, loaded.meta.input_size, loaded.meta.num_classes) == ("resnet20_nc", 32, 100)
    _same_outputs(model, loaded.model, 32)


def test_an_nc_arch_field_without_nc_keys_loads_the_plain_network(tmp_path):
    model = build_model("resnet20", 10)
    path = tmp_path / "plain.pth"
    torch.save({"model": model.state_dict(), "arch": "resnet20_nc"}, path)
    assert load_checkpoint(path).meta.arch == "resnet20"


def test_nc_blocks_built_for_smaller_maps_than_they_see_load_exactly(tmp_path):
    """Published CIFAR configurations build some blocks for 16x16 maps that see 32x32 ones."""
    torch.manual_seed(0)
    model = build_model("resnet20_nc", 10, nc_spatial={"layer1": (16, 16), "layer2": (16, 16)}).eval()
    assert model.layer1.cn.spatial == (16, 16) and model.layer3.cn.spatial == (16, 16)
    path = tmp_path / "half.pth"
    torch.save({"model": model.state_dict(), "arch": "resnet20"}, path)
    loaded = load_checkpoint(path)
    assert loaded.meta.input_size == 32  # not 16, which the first block alone would suggest
    assert loaded.meta.extra["nc_spatial"] == {"layer1": [16, 16], "layer2": [16, 16]}
    _same_outputs(model, loaded.model, 32)
    # and it survives a round trip through the project's own format
    again = load_checkpoint(save_checkpoint(tmp_path / "own.pt", loaded.model, loaded.meta))
    _same_outputs(model, again.model, 32)


def test_an_unknown_arch_is_a_usage_error_with_a_suggestion(tmp_path):
    from nc_viz.core.errors import UsageError

    path = tmp_path / "r20.pth"
    torch.save(build_model("resnet20", 10).state_dict(), path)
    with pytest.raises(UsageError, match="did you mean .*'resnet20'"):
        load_checkpoint(path, arch="resnet2O")


def test_an_unknown_arch_in_the_metadata_is_a_checkpoint_error(tmp_path):
    model = build_model("resnet20", 10)
    meta = ModelMeta(arch="resnet20", num_classes=10, preprocess=Preprocess(32))
    path = save_checkpoint(tmp_path / "x.pt", model, meta)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["arch"] = "vit_b_16"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="x.pt: made for an architecture"):
        load_checkpoint(path)


def test_the_safetensors_suffix_is_read_in_any_case(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "C.SAFETENSORS"
    save_file(build_model("resnet20", 10).state_dict(), path)
    assert load_checkpoint(path).meta.arch == "resnet20"


def test_the_nc_model_s_hint_names_the_nc_arch_option(tmp_path, caplog):
    from nc_viz.pair import load_model_pair

    plain = tmp_path / "plain.pth"
    torch.save(build_model("resnet20", 10).state_dict(), plain)
    with pytest.raises(CheckpointError, match="use nc_arch resnet20$"):
        load_model_pair(plain, plain, nc_arch="resnet20_nc", device="cpu")
    nc = tmp_path / "nc.pth"
    torch.save(build_model("resnet20_nc", 10).state_dict(), nc)
    load_model_pair(nc, plain, device="cpu")
    assert "swapped" in caplog.text


@pytest.mark.parametrize("how", ["--arch", "metadata"])
def test_a_larger_networks_file_is_refused_when_its_only_problem_is_extra_keys(tmp_path, how):
    """resnet32 holds every key of resnet20 with the same shape, and more blocks: loaded as a
    resnet20 it must be refused, naming the extra keys, never cut down to the first blocks."""
    big = build_model("resnet32", 10).state_dict()
    small = build_model("resnet20", 10).state_dict()
    assert all(k in big and big[k].shape == v.shape for k, v in small.items())  # extra keys only
    path = tmp_path / "r32.pt"
    if how == "--arch":
        torch.save(big, path)
        kwargs = {"arch": "resnet20"}
    else:  # the project's format, its metadata saying resnet20
        meta = ModelMeta(arch="resnet20", num_classes=10, preprocess=Preprocess(32))
        torch.save({"format": "ncviz", "version": 1, "state_dict": big, "meta": meta.to_dict()}, path)
        kwargs = {}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, **kwargs)
    text = str(err.value)
    assert text.startswith(f"{path}: does not fit resnet20: unexpected layer1.3.") and "missing" not in text
    assert "\n" not in text


def test_a_file_with_extra_keys_is_a_one_line_error_in_the_cli(small_pair, tmp_path, capsys):
    from PIL import Image

    from nc_viz.cli import main

    path = tmp_path / "r32.pt"
    torch.save(build_model("resnet32", 5).state_dict(), path)
    image = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (90, 120, 30)).save(image)
    out = tmp_path / "fig.png"
    code = main(["compare", str(image), "--baseline", str(path), "--arch", "resnet20", "--nc", str(small_pair[1]),
                 "-o", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {path}: does not fit resnet20: unexpected layer1.3."), err
    assert err.strip().count("\n") == 0 and not out.exists()


@pytest.mark.parametrize("name", ["baseline.pt", "nc.pt"])
def test_shipped_metadata_becomes_one_preprocess_and_is_written_back_key_for_key(name):
    path = Path(__file__).resolve().parents[1] / "pretrained" / name
    stored = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    meta = ModelMeta.from_dict(stored)
    assert meta.preprocess == Preprocess(stored["input_size"], tuple(stored["mean"]), tuple(stored["std"]),
                                         stored["crop_pct"], center_crop=True)
    assert load_checkpoint(path).meta == meta
    written = meta.to_dict()
    assert written == stored and list(written) == list(stored)  # the format's keys, in its order


def test_a_record_in_the_metadata_is_stored_under_the_flat_keys(tmp_path, resnet18_nc):
    record = Preprocess(64, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 0.5)
    meta = ModelMeta(arch="resnet18_nc", num_classes=10, preprocess=record, reduction=8, placement="stages")
    stored = torch.load(save_checkpoint(tmp_path / "m.pt", resnet18_nc, meta), map_location="cpu",
                        weights_only=True)["meta"]
    assert {k: stored[k] for k in ("input_size", "mean", "std", "crop_pct")} == {
        "input_size": 64, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "crop_pct": 0.5}
    assert "preprocess" not in stored and "preprocess" not in stored["extra"]
    assert load_checkpoint(tmp_path / "m.pt").meta.preprocess == meta.preprocess
