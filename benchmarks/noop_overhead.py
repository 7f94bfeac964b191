"""The noop-overhead part: the sweep's own cost per trial for a task that only returns, as
the study grows, in one process on SQLite with the random sampler (benchmarks/noop_probe.py),
beside Optuna's own calls for the same trials without a sweep."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna

from benchmarks.results import ROOT, Part, Results

OWN_TARGET_MS = 30.0  # the sweep's own cost a trial
WALL_TARGET_MS = 50.0  # a trial, Hydra's job included, over the first 1,000
FLAT_TARGET = 1.3  # the last block against the second
BLOCK = 1000
SPACE = ("params.lr=interval(0.0001, 0.1)", "params.batch_size=int(interval(32, 512))")


def bench_noop_overhead(results: Results, workdir: Path, trials: int) -> Part:
    block = min(BLOCK, max(1, trials // 4))
    database = workdir / "noop-overhead.db"
    database.unlink(missing_ok=True)
    command = [
        sys.executable, str(ROOT / "benchmarks" / "noop_probe.py"), str(block), "-m",
        "hydra/sweeper=pruning_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
        "hydra/launcher=basic", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.storage=sqlite:///{database}", "hydra.sweeper.job_output=file",
        f"hydra.sweep.dir={workdir / 'noop-overhead'}", *SPACE,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"noop probe failed:\n{result.stderr[-3000:]}")
    blocks = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("NOOP ")]
    part = results.part(
        "noop-overhead",
        f"{trials} trials of a task that only returns (benchmarks/noop_task.py), one process, "
        "the basic launcher, the random sampler, SQLite; ms a trial, per block of trials: all of it, "
        "and the sweep's own (all of it but Hydra's job)",
    )
    own = []
    for first, last, wall, own_ms in blocks:
        own.append(float(own_ms))
        part.row(f"trials {first} to {last}: a trial / the sweep's own", f"{float(wall):.1f} / {own_ms}")
    walls = [float(b[2]) for b in blocks]
    first_thousand = walls[: max(1, BLOCK // block)]
    wall_mean = sum(first_thousand) / len(first_thousand)
    part.check(
        "a trial, the first 1,000",
        f"{wall_mean:.1f}",
        f"<= {WALL_TARGET_MS:g} ms",
        wall_mean <= WALL_TARGET_MS,
    )
    part.check(
        "the sweep's own, worst block",
        f"{max(own):.1f}",
        f"<= {OWN_TARGET_MS:g} ms",
        max(own) <= OWN_TARGET_MS,
    )
    if len(own) >= 3:
        ratio = own[-1] / own[1]
        part.check(
            "the sweep's own, last block / second",
            f"{ratio:.2f}",
            f"<= {FLAT_TARGET:g}",
            ratio <= FLAT_TARGET,
        )
    alone = optuna_alone(workdir)
    part.row("Optuna alone: ask, 2 suggestions, a heartbeat, tell, same storage", f"{alone:.1f}")
    # Both slow down alike on a busy machine: their ratio says more than either there.
    part.row("the sweep's own, last block / Optuna alone", f"{own[-1] / alone:.1f}")
    return part


def optuna_alone(workdir: Path, trials: int = 300) -> float:
    """Mean ms of the Optuna calls each of those trials needs, with no sweep and no Hydra job."""
    from pruning_optuna_sweeper.storage import open_storage

    # Heartbeats outside study.optimize, as the sweep beats: Optuna warns of both.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

    database = workdir / "noop-optuna-alone.db"
    database.unlink(missing_ok=True)
    storage = open_storage(f"sqlite:///{database}", heartbeat_interval=10, grace_period=30)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study_id = storage.get_study_id_from_name(study.study_name)
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        lr = trial.suggest_float("params.lr", 1e-4, 0.1)
        trial.suggest_int("params.batch_size", 32, 512)
        study.tell(trial, lr)
    return (time.perf_counter() - started) / trials * 1000
