"""Where a sweep trial's time goes besides training: runs `main.py` with timers.

    python benchmarks/overhead_probe.py -m hydra/sweeper=optuna [overrides...]

Wraps the per-trial steps of Hydra, the sweeper and the task in timers, runs
the sweep in this process, and prints the mean and the median over the
trials of the milliseconds each takes per trial (the median is less
sensitive to the first trial's one-off costs and to a noisy neighbour on the
machine). The total is each trial's whole turn of the sweeper's loop (from
asking for it to asking for the next) minus its training.
The timers see only this process: run it with `hydra/launcher=basic
hydra.sweeper.n_jobs=1`, which runs each trial here (bench.py does).
Used by bench.py; the wrappers only measure, they change nothing.
"""

from __future__ import annotations

import atexit
import functools
import runpy
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hydra._internal.core_plugins.basic_launcher as basic_launcher  # noqa: E402
import hydra.core.utils as hydra_job  # noqa: E402
import optuna  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402

import ds.run  # noqa: E402
import hydra_plugins.pruning_optuna_sweeper._asking as _asking  # noqa: E402
import hydra_plugins.pruning_optuna_sweeper._config_reuse as _config_reuse  # noqa: E402
import hydra_plugins.pruning_optuna_sweeper._loop as _loop  # noqa: E402
import hydra_plugins.pruning_optuna_sweeper._sweep as _sweep  # noqa: E402
import pruning_optuna_sweeper  # noqa: E402
import pruning_optuna_sweeper.heartbeat  # noqa: E402
import pruning_optuna_sweeper.trial  # noqa: E402

starts: defaultdict[str, list[float]] = defaultdict(list)
durations: defaultdict[str, list[float]] = defaultdict(list)
labels: list[str] = []  # every timed step, in the order they are wrapped


def timed(owner: object, name: str, label: str) -> None:
    setattr(owner, name, timer(getattr(owner, name), label))


def timer(original, label: str):
    if label not in labels:
        labels.append(label)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            starts[label].append(started)
            durations[label].append(time.perf_counter() - started)

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
# main.py imports current_trial from the package when it runs (below), after this.
timed(pruning_optuna_sweeper, "current_trial", "task: find the trial: storage, study, pruner (in run_job)")
timed(ds.run, "load_data", "task: data, cached in process (in run_job)")
timed(ds.run, "train", "task: training (in run_job)")
timed(optuna.Trial, "report", "optuna: trial.report (in training)")
timed(optuna.Trial, "should_prune", "optuna: trial.should_prune (in training)")
timed(ds.run, "save_checkpoint", "task: save model.pt (in run_job)")
timed(
    pruning_optuna_sweeper.trial.SweepTrial,
    "upload_artifact",
    "task: upload model.pt as an artifact (in run_job)",
)
timed(pruning_optuna_sweeper.trial.SweepTrial, "set_user_attr", "task: the trial's user attrs (in run_job)")
timed(optuna.storages, "fail_stale_trials", "sweeper: stale-trial check (before an ask)")
timed(_asking.Asker, "ask", "sweeper: ask (sampling, attrs)")
timed(pruning_optuna_sweeper.heartbeat.Heartbeats, "add", "sweeper: the trial's first heartbeat (in ask)")
timed(_loop, "record_outcome", "sweeper: tell")
timed(_sweep.SweepRun, "_launch_one", "sweeper: launch (all of a trial's job)")
timed(_loop.TrialLoop, "run", "sweeper: the trial loop")


@atexit.register
def report() -> None:
    [loop_start], [loop_seconds] = starts["sweeper: the trial loop"], durations["sweeper: the trial loop"]
    # A trial's turn: from asking for it to asking for the next (or the loop's end).
    asks = starts["sweeper: ask (sampling, attrs)"]
    turns = list(zip(asks, [*asks[1:], loop_start + loop_seconds], strict=False))
    # Per turn, so only calls made by the trial loop count: the sweep's own
    # start-up (its first data load, say) goes through some of the same functions.
    per_turn = {
        label: [_within(start, end, label) for start, end in turns]
        for label in labels
        if label != "sweeper: the trial loop"
    }
    per_turn["hydra: run_job without the task"] = [
        job - task
        for job, task in zip(
            per_turn["hydra: run_job, incl. the task (in launch)"],
            per_turn["task: all of it (in run_job)"],
            strict=False,
        )
    ]
    # Reporting to the trial happens inside the epoch loop but is not training.
    per_turn["everything but training"] = [
        (end - start) - training + report + prune
        for (start, end), training, report, prune in zip(
            turns,
            per_turn["task: training (in run_job)"],
            per_turn["optuna: trial.report (in training)"],
            per_turn["optuna: trial.should_prune (in training)"],
            strict=False,
        )
    ]
    print(f"OVERHEAD per trial (ms): {'mean':>8s} {'median':>8s}")
    for label, values in per_turn.items():
        if any(values):
            print(
                f"OVERHEAD   {label:52s} {statistics.mean(values) * 1000:8.1f} "
                f"{statistics.median(values) * 1000:8.1f}"
            )


def _within(start: float, end: float, label: str) -> float:
    """Seconds of `label`'s calls that began between start and end."""
    return sum(d for s, d in zip(starts[label], durations[label], strict=False) if start <= s < end)


sys.argv[0] = str(ROOT / "main.py")
runpy.run_path(str(ROOT / "main.py"), run_name="__main__")
