"""Where a sweep trial's time goes besides training: runs `main.py` with timers.

    python benchmarks/overhead_probe.py -m hydra/sweeper=optuna [overrides...]

Wraps the per-trial steps of Hydra, the sweeper and the task in timers, runs
the sweep in this process, and prints the mean milliseconds per trial of each.
The total is each trial's whole turn of the sweeper's loop (from asking for it
to asking for the next) minus its training: its mean and its median over the
trials (the median is less sensitive to a noisy neighbour on the machine).
Used by bench.py; the wrappers only measure, they change nothing.
"""

from __future__ import annotations

import atexit
import functools
import runpy
import statistics
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
starts: defaultdict[str, list[float]] = defaultdict(list)
durations: defaultdict[str, list[float]] = defaultdict(list)


def timed(owner: object, name: str, label: str) -> None:
    setattr(owner, name, timer(getattr(owner, name), label))


def timer(original, label: str):
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            seconds[label] += elapsed
            calls[label] += 1
            starts[label].append(started)
            durations[label].append(elapsed)

    return wrapper


timed(_config_reuse.ReusingConfigLoader, "load_sweep_config", "hydra: compose the trial's config (in launch)")
timed(HydraConfig, "set_config", "hydra: HydraConfig.set_config, twice (in launch)")
timed(basic_launcher, "run_job", "hydra: run_job, incl. the task (in launch)")
_run_job = basic_launcher.run_job


def _run_job_timing_its_task(*args, task_function, **kwargs):
    return _run_job(*args, task_function=timer(task_function, "task: all of it (in run_job)"), **kwargs)


basic_launcher.run_job = _run_job_timing_its_task
timed(hydra_job, "_save_config", "hydra: save the job's config files (in run_job)")
timed(hydra_job, "configure_log", "hydra: configure logging (in run_job)")
timed(sweeps.reporter, "trial_callbacks", "task: find the trial, load the pruner (in run_job)")
timed(ds.run, "load_data", "task: data, cached in process (in run_job)")
timed(ds.run, "train", "task: training (in run_job)")
timed(optuna.Trial, "report", "optuna: trial.report (in training)")
timed(optuna.Trial, "should_prune", "optuna: trial.should_prune (in training)")
timed(sweep.SweepRun, "_ask", "sweeper: ask (sampling)")
timed(sweep, "record_outcome", "sweeper: tell")
timed(sweep.SweepRun, "_launch", "sweeper: launch (all of a trial's job)")
timed(sweep.SweepRun, "_run_trials", "sweeper: the trial loop")


@atexit.register
def report() -> None:
    trials = calls["sweeper: launch (all of a trial's job)"] or 1
    [loop_start], [loop_seconds] = starts["sweeper: the trial loop"], durations["sweeper: the trial loop"]
    loop_end = loop_start + loop_seconds
    # Only calls made by the trial loop: the sweep's own start-up (its first
    # data load, say) goes through some of the same functions.
    in_loop = {
        label: _within(loop_start, loop_end, label)
        for label in seconds
        if label != "sweeper: the trial loop" and any(loop_start <= s < loop_end for s in starts[label])
    }
    print("OVERHEAD per trial (ms):")
    for label, total in in_loop.items():
        print(f"OVERHEAD   {label:52s} {total / trials * 1000:8.1f}")
    # A trial's turn: from asking for it to asking for the next (or the loop's end).
    turn_ends = [*starts["sweeper: ask (sampling)"][1:], loop_end]
    turns = [end - start for start, end in zip(starts["sweeper: ask (sampling)"], turn_ends)]
    trainings = durations["task: training (in run_job)"]
    # Reporting to the trial happens inside the epoch loop but is not training.
    reportings = [
        sum(_within(start, end, label) for label in ("optuna: trial.report (in training)", "optuna: trial.should_prune (in training)"))
        for start, end in zip(starts["sweeper: ask (sampling)"], turn_ends)
    ]
    overheads = [turn - training + reporting for turn, training, reporting in zip(turns, trainings, reportings)]
    own = in_loop["hydra: run_job, incl. the task (in launch)"] - in_loop["task: all of it (in run_job)"]
    print(f"OVERHEAD   {'hydra: run_job without the task':52s} {own / trials * 1000:8.1f}")
    print(f"OVERHEAD   {'everything but training, mean':52s} {statistics.mean(overheads) * 1000:8.1f}")
    print(f"OVERHEAD   {'everything but training, median':52s} {statistics.median(overheads) * 1000:8.1f}")


def _within(start: float, end: float, label: str) -> float:
    """Seconds of `label`'s calls that began between start and end."""
    return sum(d for s, d in zip(starts[label], durations[label]) if start <= s < end)


sys.argv[0] = str(ROOT / "main.py")
runpy.run_path(str(ROOT / "main.py"), run_name="__main__")
