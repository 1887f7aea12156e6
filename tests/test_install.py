"""A regular (not editable) install finds the shipped demo pair, from any folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_wheel_install_runs_compare_with_the_shipped_pair(tmp_path: Path) -> None:
    """Build a wheel, install it into a fresh venv (dependencies from this test's environment,
    no network), then run `ncviz compare` with no checkpoints from a folder outside the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NCVIZ_PRETRAINED")}
    source = tmp_path / "source"  # a copy, so that no earlier build/ folder can leak into the wheel
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "demo", "__pycache__", ".pytest_cache"))
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  str(source), "-w", str(wheels)], tmp_path, env)
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("ncviz-*.whl"))

    target = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, env).stdout.strip())
    # torch, numpy, ... come from this test's environment (its editable ncviz does not: a path
    # added by a .pth file has its own .pth files ignored)
    (site / "_ncviz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                      "--no-index", str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import nc_viz; print(nc_viz.__file__)"], elsewhere, env)
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    sample = next(REPO.glob("samples/multi_*.png"))
    done = _run([str(target / "bin" / "ncviz"), "compare", str(sample), "-o", "f.png"], elsewhere, env)
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "f.png").read_bytes().startswith(b"\x89PNG")
