"""The pool launcher's workers share the cores: a third-party torch app (examples/mlp, which
leaves torch's threads at their defaults and logs them) trains with its worker's share, or
with hydra.launcher.threads_per_worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hydra_plugins.pruning_optuna_sweeper.pool_launcher import THREAD_VARIABLES
from tests.cli import copy_example

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

THREADS_LINE = re.compile(r"torch threads: (\d+) \(OMP_NUM_THREADS=(\S+)\)")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("app"), "mlp")


def sweep(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Two short trials on two pool workers, in an environment that sets no thread variable."""
    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARIABLES, "PYTHONPATH")}
    command = [
        *("mlp.py", "-m", "hydra/sweeper=pruning_optuna", "hydra/launcher=pool", "hydra.launcher.n_jobs=2"),
        *("hydra.sweeper.n_trials=2", "epochs=1", "samples=256", "features=16", "hidden=16", *args),
    ]
    return subprocess.run(
        [sys.executable, *command], cwd=app, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(
    ("setting", "threads"),
    [([], max(1, len(os.sched_getaffinity(0)) // 2)), (["hydra.launcher.threads_per_worker=3"], 3)],
)
def test_each_worker_trains_with_its_share_of_the_cores(app: Path, setting: list[str], threads: int) -> None:
    result = sweep(app, *setting)
    assert result.returncode == 0, result.stderr[-3000:]
    # torch is imported by the sweep's process before the workers fork: its setting is changed too.
    assert THREADS_LINE.findall(result.stdout + result.stderr) == [(str(threads), str(threads))] * 2


def test_a_thread_count_below_one_is_refused_in_one_paragraph(app: Path) -> None:
    result = sweep(app, "hydra.launcher.threads_per_worker=0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hydra/launcher=pool could not start: hydra.launcher.threads_per_worker=0; expected auto "
        "(the cores shared among the workers), a positive number of threads, or null (the libraries' own "
        "defaults)"
    )
