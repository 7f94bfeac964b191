"""The overhead part: where a trial's time goes besides training (overhead_probe.py), what
Optuna's own calls for those trials cost alone on SQLite, and, for comparison, a job of
Hydra's basic sweeper and of the stock hydra-optuna-sweeper running a task that only returns."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from benchmarks.results import ROOT, Part, Results
from benchmarks.sweeprun import SweepRunner

OVERHEAD_TARGET_MS = 50.0
# The probe wraps Hydra's basic launcher, which runs each trial in the sweep's own process.
IN_PROCESS = ("hydra/launcher=basic", "hydra.sweeper.n_jobs=1")


def bench_overhead(results: Results, runner: SweepRunner, workdir: Path, trials: int) -> Part:
    command = runner.command(
        "overhead",
        *IN_PROCESS,
        f"hydra.sweeper.n_trials={trials}",
        "params.epoch_count=1",
        "params.batch_size=512",
        script=ROOT / "benchmarks" / "overhead_probe.py",
    )
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"overhead probe failed:\n{result.stderr[-3000:]}")
    part = results.part(
        "overhead",
        f"{trials} one-epoch trials (batch 512) through the basic launcher, in the sweep's process "
        "(benchmarks/overhead_probe.py); ms per trial, mean / median",
    )
    for line in result.stdout.splitlines():
        if line.startswith("OVERHEAD   "):
            label, mean, median = line.removeprefix("OVERHEAD   ").rsplit(maxsplit=2)
            figure = f"{float(mean):.1f} / {float(median):.1f}"
            if label.strip() == "everything but training":
                part.check(
                    label.strip(),
                    figure,
                    f"mean <= {OVERHEAD_TARGET_MS:g} ms",
                    float(mean) <= OVERHEAD_TARGET_MS,
                )
            else:
                part.row(label.strip(), figure)
    # The part of those figures the libraries set by themselves: Hydra's
    # run_job above, and Optuna's calls here, with no Hydra job and no training.
    sweeper = default_sweeper()
    space = [f"{key}={values}" for key, values in sweeper.params.items()]
    part.row(
        "Optuna alone: ask, heartbeat, report, tell on SQLite (a subset of the above), mean",
        f"{optuna_alone(sweeper, space, workdir, trials):.1f}",
    )
    # For comparison, what a job costs without this project's sweeper:
    # composed from scratch, like every job of Hydra's own launchers.
    noop = (sys.executable, str(ROOT / "benchmarks" / "noop_task.py"), "-m")
    basic = per_job(
        workdir,
        "basic",
        trials,
        lambda n, name: [
            *noop,
            "params.lr=" + ",".join(str(i + 1) for i in range(n)),
            f"hydra.sweep.dir={workdir / name}",
        ],
    )
    stock = per_job(
        workdir,
        "stock",
        trials,
        lambda n, name: [
            *noop,
            "hydra/sweeper=optuna",
            f"hydra.sweeper.n_trials={n}",
            "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.storage=sqlite:///{workdir / 'stock.db'}",
            f"hydra.sweeper.study_name={name}",
            "hydra.sweeper.sampler.seed=0",
            f"hydra.sweep.dir={workdir / name}",
            *space,
        ],
    )
    part.row(
        "for comparison, a job that only returns (noop_task.py): Hydra's basic sweeper, mean", f"{basic:.1f}"
    )
    part.row("the same, the stock hydra-optuna-sweeper on SQLite, mean", f"{stock:.1f}")
    return part


def default_sweeper():
    """The default sweep's `hydra.sweeper` settings, composed from conf/."""
    from hydra import compose, initialize_config_dir

    from ds.config import register_configs

    register_configs()
    with initialize_config_dir(str(ROOT / "conf")):
        return compose("config", ["hydra/sweeper=optuna"], return_hydra_config=True).hydra.sweeper


def optuna_alone(sweeper, space: list[str], workdir: Path, trials: int) -> float:
    """Mean ms of the Optuna calls no sweep can do without for a one-epoch
    trial (ask with sampling, a heartbeat, one report, tell), with the default
    sweep's sampler, pruner, search space and SQLite storage, and nothing
    else: no Hydra job, no training. The sweep makes a few more (its
    attributes, the trial's lookup, the stale-trial check, the best so far)."""
    from hydra.utils import instantiate

    import hydra_plugins.pruning_optuna_sweeper._sweep  # noqa: F401  silences Optuna's experimental warnings
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from hydra_plugins.pruning_optuna_sweeper._settings import PRUNER_WHITELIST, SAMPLER_WHITELIST
    from pruning_optuna_sweeper.storage import open_storage

    storage = open_storage(
        f"sqlite:///{workdir / 'optuna-alone.db'}",
        heartbeat_interval=sweeper.heartbeat_interval,
        grace_period=sweeper.grace_period,
    )
    study = optuna.create_study(
        storage=storage,
        sampler=instantiate(sweeper.sampler, _execution_whitelist_=SAMPLER_WHITELIST),
        pruner=instantiate(sweeper.pruner, _execution_whitelist_=PRUNER_WHITELIST),
        direction=sweeper.direction,
    )
    distributions, _, _ = create_params_from_overrides(space)
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(distributions)
        storage.record_heartbeat(trial._trial_id)
        trial.report(trial.params["params.lr"], step=1)  # one epoch: its last, so no should_prune
        study.tell(trial, trial.params["params.lr"])
    return (time.perf_counter() - started) / trials * 1000


def per_job(workdir: Path, kind: str, jobs: int, command: Callable[[int, str], list[str]]) -> float:
    """Mean ms a job adds to a multirun: `jobs + 1` jobs against 1, the same
    start-up in both; the fastest of two tries of each. `command(n, name)`
    runs n jobs, its study and folder called `name`."""

    def wall(n: int) -> float:
        times = []
        for attempt in range(2):
            started = time.perf_counter()
            result = subprocess.run(
                command(n, f"{kind}-{n}-{attempt}"), cwd=workdir, capture_output=True, text=True
            )
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command(n, 'x'))} failed:\n{result.stderr[-3000:]}")
        return min(times)

    return (wall(jobs + 1) - wall(1)) / jobs * 1000
