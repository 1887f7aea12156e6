"""The torchvision families beyond ResNet (DenseNet, EfficientNet, MobileNetV2, RegNet): their specs
match what torchvision builds, their keys are told apart, their preprocessing is torchvision's,
and they train from the command line. (CAM exactness, NC placement and checkpoint round trips of
every family are in test_families.)"""
from __future__ import annotations

import pytest
import torch
import torchvision

from nc_viz.models.arch_inference import _infer_arch_name
from nc_viz.models.checkpoints import load_checkpoint
from nc_viz.cli import main
from nc_viz.models import NCWrapper, build_model, get_arch, get_family, list_archs
from nc_viz.models.regnet import REGNETS, regnet_params
from nc_viz.tasks.training.train import synthetic_stem_stride

FAMILIES = ("densenet", "efficientnet", "mobilenet_v2", "regnet")


def _meta_state(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model(name, 1000).state_dict()


def test_every_torchvision_size_is_registered_with_an_nc_twin() -> None:
    prefixes = ("densenet", "efficientnet", "mobilenet_v2", "regnet")
    wanted = {n for n in torchvision.models.list_models() if n.startswith(prefixes)}
    registered = {n for f in FAMILIES for n in list_archs(f)}
    assert wanted | {f"{n}_nc" for n in wanted} == registered
    assert all(get_arch(n).cam_exact and get_arch(n).placements == ("stages",) for n in registered)


def test_regnet_block_parameters_are_torchvisions(monkeypatch) -> None:
    """Our init values give the BlockParams torchvision's own builders compute."""
    captured = {}
    monkeypatch.setattr(torchvision.models.regnet, "_regnet", lambda params, *a, **k: captured.setdefault("p", params))
    for name in REGNETS:
        captured.clear()
        getattr(torchvision.models, name)()
        ours, theirs = regnet_params(name), captured["p"]
        assert vars(ours) == vars(theirs), name


def test_regnet_builds_on_the_meta_device_like_torchvision() -> None:
    shapes = {k: v.shape for k, v in _meta_state("regnet_x_400mf").items()}
    assert shapes == {k: v.shape for k, v in torchvision.models.regnet_x_400mf(weights=None).state_dict().items()}


def test_efficientnet_and_mobilenet_keys_are_told_apart() -> None:
    efficientnet, mobilenet = get_family("efficientnet"), get_family("mobilenet_v2")
    ef_keys, mb_keys = frozenset(_meta_state("efficientnet_b0")), frozenset(_meta_state("mobilenet_v2"))
    assert efficientnet.recognises(ef_keys) and not mobilenet.recognises(ef_keys)
    assert mobilenet.recognises(mb_keys) and not efficientnet.recognises(mb_keys)
    assert _infer_arch_name(_meta_state("efficientnet_b0"), "x", nc=False) == "efficientnet_b0"
    assert _infer_arch_name(_meta_state("mobilenet_v2"), "x", nc=False) == "mobilenet_v2"


def test_efficientnet_b1_and_b2_share_block_counts_and_are_told_apart_by_shape() -> None:
    assert get_arch("efficientnet_b1").block_counts == get_arch("efficientnet_b2").block_counts
    for name in ("efficientnet_b1", "efficientnet_b2"):
        assert _infer_arch_name(_meta_state(name), "x", nc=False) == name


def test_preprocessing_comes_from_torchvisions_weights() -> None:
    expect = {"efficientnet_b0": (224, 224 / 256), "efficientnet_b7": (600, 1.0), "efficientnet_v2_s": (384, 1.0),
              "efficientnet_v2_l": (480, 1.0), "densenet121": (224, 0.875), "mobilenet_v2": (224, 224 / 232),
              "regnet_y_400mf": (224, 224 / 232), "regnet_y_128gf": (224, 1.0)}
    for name, (size, crop) in expect.items():
        spec = get_arch(name)
        assert (spec.preprocess.input_size, spec.preprocess.crop_pct) == pytest.approx((size, crop)), name
        assert spec.default_input_size == size and spec.preprocess.center_crop, name
    assert get_arch("efficientnet_v2_l").preprocess.mean == (0.5, 0.5, 0.5)
    assert dict(get_arch("efficientnet_b0").details)["interpolation"] == "bicubic"


def test_a_bare_state_dict_gets_its_architectures_preprocessing_record(tmp_path) -> None:
    from nc_viz.core.constants import IMAGENET_MEAN, IMAGENET_STD
    from nc_viz.models.preprocessing import Preprocess

    torch.save(build_model("mobilenet_v2", 5).state_dict(), tmp_path / "bare.pt")
    meta = load_checkpoint(tmp_path / "bare.pt").meta
    # torchvision's MobileNet_V2_Weights.IMAGENET1K_V2: a 224 crop of a 232 resize, ImageNet mean/std
    assert meta.preprocess == get_arch("mobilenet_v2").preprocess == Preprocess(224, IMAGENET_MEAN, IMAGENET_STD,
                                                                                 224 / 232)
    assert (meta.preprocess.resize_size, meta.input_size) == (232, 224)


def test_imagenet_families_train_on_synthetic_images_without_a_stem_stride() -> None:
    assert synthetic_stem_stride("resnet20") == 2
    assert {synthetic_stem_stride(n) for n in ("resnet18", "densenet121", "efficientnet_b0", "regnet_y_400mf")} == {1}


def test_train_command_trains_a_mobilenet_pair(tmp_path, capsys) -> None:
    code = main(["train", "--arch", "mobilenet_v2", "-o", str(tmp_path), "--train-count", "16", "--val-count", "8",
                 "--size", "64", "--epochs", "1", "--batch-size", "8", "--max-steps", "1", "--device", "cpu"])
    assert code == 0 and "held-out accuracy" in capsys.readouterr().out
    for name, arch in (("baseline.pt", "mobilenet_v2"), ("nc.pt", "mobilenet_v2_nc")):
        meta = load_checkpoint(tmp_path / name).meta
        assert (meta.arch, meta.input_size, meta.stem_stride) == (arch, 64, 1)


# ----------------------------------------------------------------------------- real shapes


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for f in FAMILIES for n in list_archs(f) if not get_arch(n).nc])
def test_block_counts_and_inference_for_every_architecture(name: str) -> None:
    """Each spec's block counts are what its family counts in the keys torchvision builds, and a
    bare state dict of each (plain or NC, meta tensors) is recognised as itself."""
    spec, state = get_arch(name), _meta_state(name)
    assert get_family(spec.family).block_counts is None or \
        get_family(spec.family).block_counts(frozenset(state)) == spec.block_counts
    assert _infer_arch_name(state, "x", nc=False) == name
    assert _infer_arch_name(_meta_state(f"{name}_nc"), "x", nc=True) == f"{name}_nc"


# map side of each NC block at the default input size (module docstrings)
REAL_SIDES = {"densenet121": (56, 28, 14), "efficientnet_b0": (56, 28, 14), "mobilenet_v2": (56, 28, 14),
              "regnet_y_400mf": (56, 28, 14), "efficientnet_b7": (75, 38), "efficientnet_v2_s": (48, 24)}


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_SIDES)
def test_nc_blocks_at_the_default_size_sit_on_the_documented_maps(name: str) -> None:
    with torch.device("meta"):
        model = build_model(f"{name}_nc", 1000)
    sides = tuple(m.cn.spatial[0] for m in model.modules() if isinstance(m, NCWrapper))
    assert sides == REAL_SIDES[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet121_nc", "efficientnet_b0_nc", "mobilenet_v2_nc", "regnet_y_400mf_nc"])
def test_real_size_nc_models_keep_the_cam_contract(name: str) -> None:
    from nc_viz.models import check_cam_contract

    torch.manual_seed(0)
    model = build_model(name, 1000).eval()
    assert check_cam_contract(model, 224).exact
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory) -> dict[str, str]:
    """densenet121(+_nc) in the project's format and efficientnet_b0(+_nc) as bare state dicts,
    5 classes, built for 64 px."""
    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess

    d, paths = tmp_path_factory.mktemp("tv"), {}
    torch.manual_seed(0)
    for name in ("densenet121", "densenet121_nc"):
        nc = name.endswith("_nc")
        meta = ModelMeta(arch=name, num_classes=5, preprocess=Preprocess(64), reduction=8 if nc else None,
                         placement="stages" if nc else None)
        paths[name] = str(save_checkpoint(d / f"{name}.pth", build_model(name, 5, input_size=64), meta))
    for name in ("efficientnet_b0", "efficientnet_b0_nc"):
        paths[name] = str(d / f"{name}.pth")
        torch.save(build_model(name, 5, input_size=64).state_dict(), paths[name])
    return paths


@pytest.mark.parametrize("command", ["compare", "neurons"])
@pytest.mark.parametrize("pair", [("densenet121", "densenet121_nc"), ("efficientnet_b0", "efficientnet_b0_nc")],
                         ids=["densenet121", "efficientnet_b0"])
def test_compare_and_neurons_draw_a_torchvision_pair(small_checkpoints, rgb_image, tmp_path, capsys, command,
                                                     pair) -> None:
    out = tmp_path / f"{command}.png"
    code = main([command, str(rgb_image), "--baseline", small_checkpoints[pair[0]], "--nc",
                 small_checkpoints[pair[1]], "-o", str(out), "--device", "cpu"])
    assert code == 0 and out.stat().st_size > 1000, capsys.readouterr().err
