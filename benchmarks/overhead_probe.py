"""Where a sweep trial's time goes besides training: runs `main.py` with timers.

    python benchmarks/overhead_probe.py -m hydra/sweeper=optuna [overrides...]

Wraps the per-trial steps of Hydra, the sweeper and the task in timers, runs
the sweep in this process, and prints the mean milliseconds per trial of each.
Used by bench.py; the wrappers only measure, they change nothing.
"""

from __future__ import annotations

import atexit
import functools
import runpy
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hydra._internal.core_plugins.basic_launcher as basic_launcher  # noqa: E402
import hydra.core.utils as hydra_job  # noqa: E402
import optuna  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402

import ds.run  # noqa: E402
import hydra_plugins.pruning_optuna_sweeper._config_reuse as _config_reuse  # noqa: E402
import hydra_plugins.pruning_optuna_sweeper._sweep as sweep  # noqa: E402
import sweeps.reporter  # noqa: E402

seconds: defaultdict[str, float] = defaultdict(float)
calls: Counter[str] = Counter()


def timed(owner: object, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - started
            calls[label] += 1

    setattr(owner, name, wrapper)


timed(_config_reuse.ReusingConfigLoader, "load_sweep_config", "hydra: compose the trial's config (in launch)")
timed(HydraConfig, "set_config", "hydra: HydraConfig.set_config, twice (in launch)")
timed(basic_launcher, "run_job", "hydra: run_job, incl. the task (in launch)")
timed(hydra_job, "_save_config", "hydra: save the job's config files (in run_job)")
timed(hydra_job, "configure_log", "hydra: configure logging (in run_job)")
timed(sweeps.reporter, "trial_callbacks", "task: find the trial, load the pruner (in run_job)")
timed(ds.run, "load_data", "task: data, cached in process (in run_job)")
timed(ds.run, "train", "task: training (in run_job)")
timed(optuna.Trial, "report", "optuna: trial.report (in training)")
timed(optuna.Trial, "should_prune", "optuna: trial.should_prune (in training)")
timed(sweep.SweepRun, "_ask", "sweeper: ask (sampling)")
timed(sweep.SweepRun, "_tell", "sweeper: tell")
timed(sweep.SweepRun, "_launch", "sweeper: launch (all of a trial's job)")


@atexit.register
def report() -> None:
    trials = calls["sweeper: launch (all of a trial's job)"] or 1
    print("OVERHEAD per trial (ms):")
    for label, total in seconds.items():
        print(f"OVERHEAD   {label:52s} {total / trials * 1000:8.1f}")
    # Reporting to the trial happens inside the epoch loop but is not training.
    reporting = seconds["optuna: trial.report (in training)"] + seconds["optuna: trial.should_prune (in training)"]
    outside = seconds["hydra: run_job, incl. the task (in launch)"] - seconds["task: training (in run_job)"] + reporting
    launch_rest = seconds["sweeper: launch (all of a trial's job)"] - seconds["hydra: run_job, incl. the task (in launch)"]
    total = outside + launch_rest + seconds["sweeper: ask (sampling)"] + seconds["sweeper: tell"]
    print(f"OVERHEAD   {'everything but training':52s} {total / trials * 1000:8.1f}")


sys.argv[0] = str(ROOT / "main.py")
runpy.run_path(str(ROOT / "main.py"), run_name="__main__")
