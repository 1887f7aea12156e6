"""timm models as `timm:NAME`: loading timm state dicts, the CAM contract, the CLI pair, the extra."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.models.timm_family import timm_available
from conftest import run

needs_timm = pytest.mark.skipif(not timm_available(), reason="timm is not installed (pip install 'ncviz[timm]')")


def _bare(tmp_path, name: str, classes: int = 10, seed: int = 0):
    """A random-init timm model and its plain `state_dict` file (timm's own keys)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=classes).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def no_timm(monkeypatch):
    """timm made unimportable, and no timm name resolved yet in this process."""
    from nc_viz.models import registry

    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setattr(registry, "_RESOLVED", {})


def test_import_nc_viz_and_ncviz_models_do_not_import_timm():
    code = ("import sys\nimport nc_viz, nc_viz.pair, nc_viz.models.checkpoints, nc_viz.models\nfrom nc_viz.cli import main\n"
            "rc = main(['models', '--family', 'cifar_resnet']) or main(['models', '--family', 'timm'])\n"
            "assert 'timm' not in sys.modules, 'timm was imported'\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resnet56_nc" in proc.stdout and "timm:NAME" in proc.stdout and "\ntimm:" not in proc.stdout


def test_without_timm_a_timm_arch_is_one_line_naming_the_extra(no_timm, small_pair, image, tmp_path, capsys):
    base, nc = small_pair
    code, _, err = run(["compare", image, "--baseline", base, "--nc", nc, "--arch", "timm:resnet18d",
                        "-o", tmp_path / "f.png", "--device", "cpu"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "pip install 'ncviz[timm]'" in err and "timm:resnet18d" in err


@needs_timm
def test_a_bare_deep_stem_resnet_is_never_taken_for_a_torchvision_one(tmp_path, monkeypatch):
    """Recognised as timm's with timm installed; without it, the error asks for --arch timm:NAME."""
    from nc_viz.models.checkpoints import load_checkpoint
    from nc_viz.core.errors import CheckpointError
    from nc_viz.models import registry

    _, path = _bare(tmp_path, "resnet18d")
    assert load_checkpoint(path).meta.arch == "timm:resnet18d"
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setattr(registry, "_RESOLVED", {})
    with pytest.raises(CheckpointError, match=r"arch timm:NAME"):
        load_checkpoint(path)


@needs_timm
@pytest.mark.parametrize("name", ["resnet10t", "test_efficientnet"])
def test_a_timm_state_dict_loads_and_its_cam_is_the_hand_sum(name, tmp_path):
    import timm

    from nc_viz.cams.compute import compute_cams
    from nc_viz.models.checkpoints import load_checkpoint

    if not timm.is_model(name):
        pytest.skip(f"this timm has no {name}")
    original, path = _bare(tmp_path, name)
    loaded = load_checkpoint(path, arch=f"timm:{name}")
    spec = timm.models.get_pretrained_cfg(name)
    assert loaded.meta.num_classes == 10 and loaded.meta.input_size == spec.input_size[-1]
    assert loaded.meta.preprocess.crop_pct == pytest.approx(spec.crop_pct)
    assert loaded.meta.preprocess.mean == tuple(spec.mean)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    seen = {}
    handle = original.global_pool.register_forward_pre_hook(lambda _m, args: seen.update(f=args[0]))
    with torch.no_grad():
        expected = original(x)
    handle.remove()
    out = compute_cams(loaded.model, x)
    torch.testing.assert_close(out.logits, expected, rtol=1e-4, atol=1e-4)
    fc = original.get_classifier()
    target = expected.argmax(1)
    hand = torch.einsum("nk,nkhw->nhw", fc.weight[target], seen["f"])
    torch.testing.assert_close(out.cam, hand, rtol=1e-4, atol=1e-4)
    logit = expected.gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(out.contributions.sum(1) + fc.bias[target], logit, rtol=1e-4, atol=1e-4)


@needs_timm
def test_an_own_format_timm_checkpoint_needs_no_arch(tmp_path):
    from nc_viz.models.checkpoints import ModelMeta, load_checkpoint, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.models import build_model, get_arch

    spec = get_arch("timm:resnet10t")
    assert spec.family == "timm" and not spec.nc and spec.cam_exact
    model = build_model("timm:resnet10t", 3)
    meta = ModelMeta(arch="timm:resnet10t", num_classes=3, preprocess=Preprocess(64, spec.preprocess.mean, spec.preprocess.std))
    loaded = load_checkpoint(save_checkpoint(tmp_path / "r.pt", model, meta))
    assert loaded.meta.arch == "timm:resnet10t" and loaded.meta.input_size == 64
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))


@needs_timm
def test_an_unknown_timm_name_is_a_usage_error_with_suggestions(small_pair, image, tmp_path, capsys):
    base, nc = small_pair
    code, _, err = run(["compare", image, "--baseline", base, "--nc", nc, "--nc-arch", "timm:resnet18x",
                        "-o", tmp_path / "f.png", "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "unknown timm model 'resnet18x'" in err and "timm:resnet18" in err


def _pair_args(tmp_path, base: str, other: str, size: int) -> list[str]:
    _, a = _bare(tmp_path, base, seed=0)
    _, b = _bare(tmp_path, other, seed=1)
    return ["--baseline", a, "--arch", f"timm:{base}", "--nc", b, "--nc-arch", f"timm:{other}",
            "--input-size", str(size), "--device", "cpu"]


def _check_pair_runs(tmp_path, image, capsys, caplog, base: str, other: str, size: int) -> None:
    args = _pair_args(tmp_path, base, other, size)
    code, out, err = run(["compare", image, *args, "-o", tmp_path / "fig.png",
                          "--save-maps", tmp_path / "maps.npz"], capsys)
    assert code == 0, err
    maps = np.load(tmp_path / "maps.npz")
    assert maps["baseline_logits"].shape == (1, 10) and maps["nc_cam"].shape == (1, size // 32, size // 32)
    assert "NC blocks" not in caplog.text and "base architectures differ" not in caplog.text
    code, _, err = run(["neurons", image, *args, "--top", "8", "-o", tmp_path / "neurons.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "neurons.png").format == "PNG"


@needs_timm
def test_a_timm_baseline_against_a_timm_se_resnet_through_the_cli(tmp_path, image, capsys, caplog):
    """The issue's pair at a small size: resnet18d vs seresnet18 (same heads as resnet50d/seresnet50)."""
    _check_pair_runs(tmp_path, image, capsys, caplog, "resnet18d", "seresnet18", 64)


@needs_timm
@pytest.mark.slow
def test_resnet50d_against_seresnet50_through_the_cli(tmp_path, image, capsys, caplog):
    _check_pair_runs(tmp_path, image, capsys, caplog, "resnet50d", "seresnet50", 224)


@needs_timm
def test_convnext_refuses_cam_in_one_line_and_draws_with_gradcam(tmp_path, image, capsys):
    pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed")
    _, path = _bare(tmp_path, "convnext_atto")
    args = ["--baseline", path, "--nc", path, "--arch", "timm:convnext_atto", "--nc-arch", "timm:convnext_atto",
            "--input-size", "64", "--device", "cpu"]
    code, _, err = run(["compare", image, *args, "-o", tmp_path / "cam.png"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "CAM is not exact" in err and "--method gradcam" in err
    code, _, err = run(["compare", image, *args, "--method", "gradcam", "-o", tmp_path / "grad.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "grad.png").format == "PNG"


@needs_timm
def test_evaluate_refuses_a_model_without_exact_cam_before_reading_images(tmp_path, capsys):
    code, _, err = run(["make-data", tmp_path / "data", "--count", "4", "--seed", "1"], capsys)
    assert code == 0, err
    classes = len((tmp_path / "data" / "classes.txt").read_text().split())
    _, path = _bare(tmp_path, "convnext_atto", classes=classes)
    code, _, err = run(["evaluate", tmp_path / "data", "--baseline", path, "--nc", path, "--arch",
                        "timm:convnext_atto", "--nc-arch", "timm:convnext_atto", "--device", "cpu"], capsys)
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(error) == 1 and err.splitlines()[-1] == error[0]
    assert "CAM is not exact for the baseline model (timm:convnext_atto)" in error[0] and "--method gradcam" in error[0]


@needs_timm
@pytest.mark.slow
def test_candidate_block_counts_are_timms():
    """The recognition table (blocks per stage) matches the models this timm builds."""
    import timm

    from nc_viz.models.timm_family import CANDIDATE_BLOCKS, _block_counts

    for name, blocks in CANDIDATE_BLOCKS.items():
        if timm.is_model(name):
            with torch.device("meta"):
                model = timm.create_model(name, num_classes=2)
            assert _block_counts(frozenset(model.state_dict())) == blocks, name


@needs_timm
def test_train_refuses_a_timm_arch_before_any_work(tmp_path, capsys):
    code, _, err = run(["train", "--arch", "timm:resnet10t", "-o", tmp_path / "t", "--epochs", "1"], capsys)
    assert code == 2 and "no timm:resnet10t_nc" in err
    assert not (tmp_path / "t").exists()
