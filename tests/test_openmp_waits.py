"""`ncviz batch`, `evaluate` and `sanity` make idle OpenMP threads sleep (nc_viz.core.threads):
spinning threads took the cores that decode workers and scoring threads need, several times the
CPU per image. Training keeps the runtime's default, which was faster there."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# libgomp (the OpenMP runtime of torch's Linux wheels) prints its settings when torch loads it
# with OMP_DISPLAY_ENV=VERBOSE; GOMP_SPINCOUNT is how long an idle thread spins before it sleeps.
SCRIPT = """
import sys
from nc_viz.cli import main
main([sys.argv[1], "--help"])
import torch
torch.ones(4).sum()
"""


def _spin_count(policy: str | None, command: str = "batch") -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, "-c", SCRIPT, command], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    if not lines:
        pytest.skip("torch's OpenMP runtime is not libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    return lines[0].split("=")[1].strip().strip("'")


@pytest.mark.parametrize("command", ["batch", "evaluate", "sanity"])
def test_cli_makes_idle_openmp_threads_sleep(command):
    assert _spin_count(None, command) == "0"


def test_training_keeps_the_runtimes_spinning():
    assert int(_spin_count(None, "train")) > 0


def test_cli_keeps_the_users_wait_policy():
    assert int(_spin_count("ACTIVE")) > 0


def test_passive_waits_change_no_environment_the_user_set(monkeypatch):
    from nc_viz.core.threads import prefer_passive_waits

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert prefer_passive_waits() is False
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
