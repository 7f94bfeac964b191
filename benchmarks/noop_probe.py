"""The sweep's own cost per trial for a task that only returns, in blocks of trials.

    python benchmarks/noop_probe.py BLOCK -m hydra/sweeper=pruning_optuna hydra/launcher=basic ...

Runs benchmarks/noop_task.py under this project's sweeper in this process,
with a timer on each trial's launch (Hydra's job: composing the trial's
config, run_job, the task). After the sweep it prints, per block of BLOCK
trials, the wall time per trial (from one ask to the next) and the sweep's
own part of it: that time minus the launch. Used by bench.py (the
noop-overhead part); the wrapper only measures, it changes nothing.
"""

from __future__ import annotations

import atexit
import functools
import runpy
import sys
import time
from pathlib import Path

from hydra_plugins.pruning_optuna_sweeper import _sweep

ROOT = Path(__file__).resolve().parents[1]

block = int(sys.argv.pop(1))
launches: list[tuple[float, float]] = []  # (start, seconds) of each trial's launch
_launch_one = _sweep.SweepRun._launch_one


@functools.wraps(_launch_one)
def timed_launch(self, overrides, job_number):
    started = time.perf_counter()
    try:
        return _launch_one(self, overrides, job_number)
    finally:
        launches.append((started, time.perf_counter() - started))


_sweep.SweepRun._launch_one = timed_launch


@atexit.register
def report() -> None:
    # A trial's turn: from its launch's start to the next one's, so the first trial's
    # one-off costs (the study's creation) are left out and every turn is whole.
    for first in range(0, len(launches) - 1, block):
        turns = launches[first : first + block + 1]
        if len(turns) < 2:
            break
        wall = (turns[-1][0] - turns[0][0]) / (len(turns) - 1)
        launch = sum(seconds for _, seconds in turns[:-1]) / (len(turns) - 1)
        print(f"NOOP {first + 1} {first + len(turns) - 1} {wall * 1000:.2f} {(wall - launch) * 1000:.2f}")


sys.argv[0] = str(ROOT / "benchmarks" / "noop_task.py")
runpy.run_path(sys.argv[0], run_name="__main__")
