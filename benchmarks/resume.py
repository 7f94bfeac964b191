"""The checkpoint parts: what saving a checkpoint every epoch costs, and what a resume saves.

- checkpoint: the default epoch (batch 128, 1 thread, the fast path) and the save of a single run's
  checkpoint (checkpoint.pt in its folder) and of a trial's (its artifact store, beside a SQLite
  study) after it; the target: epoch and save within 5 % of the epoch.
- resume: issue 26's check. A sweep of one fixed 10-epoch trial is SIGKILLed (its whole process
  group) once the trial has reported 5 epochs, and the same command is run again: the retry's value
  must equal an untouched trial's exactly, in at most 0.75x its time, with nothing left RUNNING.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from benchmarks.results import Part, Results
from benchmarks.sweeprun import SweepRunner
from ds.data import load_mnist
from ds.model import LinearNet
from ds.train import train
from pruning_optuna_sweeper.checkpoint import RunCheckpoint, TrialCheckpoint

OVERHEAD_TARGET = 1.05
TIME_TARGET = 0.75
EPOCHS, KILLED_AFTER = 10, 5
FIXED_TRIAL = (
    "hydra.sweeper.n_trials=1",
    f"params.epoch_count={EPOCHS}",
    "params.lr=0.001",
    "params.batch_size=64",
    "hydra/sweeper/pruner=none",
)


def timed_epoch(data, save: Callable[[dict], None] | None) -> tuple[float, float]:
    """Wall seconds of one default epoch and of saving its checkpoint with `save` after it."""
    torch.manual_seed(0)
    optimizer = functools.partial(torch.optim.Adam, lr=1e-3)
    saving: list[float] = []

    def on_state(state: dict) -> None:
        started = time.perf_counter()
        assert save is not None
        save(state)
        saving.append(time.perf_counter() - started)

    started = time.perf_counter()
    train(
        data,
        LinearNet(32),
        optimizer,
        batch_size=128,
        epoch_count=1,
        seed=0,
        on_state=None if save is None else on_state,
    )
    return time.perf_counter() - started - sum(saving), sum(saving)


def bench_checkpoint(results: Results, data_dir: Path, cache: Path, repeats: int) -> Part:
    """Each run times its epoch and its save apart, so the ratio is not at the mercy of a busy
    machine's epoch-to-epoch noise; runs with and without saving are interleaved."""
    torch.set_num_threads(1)
    logging.getLogger("ds.train").setLevel(logging.WARNING)
    data = load_mnist(data_dir, cache)
    with tempfile.TemporaryDirectory() as folder:
        run = RunCheckpoint(Path(folder) / "run")
        storage = optuna.storages.RDBStorage(f"sqlite:///{Path(folder) / 'study.db'}")
        study = optuna.create_study(storage=storage)
        trial = study.ask()
        store = Path(folder) / "study-artifacts"
        store.mkdir()
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(study.study_name), trial.number
        )
        saved = TrialCheckpoint(
            trial,
            storage,
            trial_id,
            optuna.artifacts.FileSystemArtifactStore(str(store)),
            {"folder": str(store)},
        )
        runs: dict[str, Callable[[], tuple[float, float]]] = {
            "no checkpoint": lambda: timed_epoch(data, None),
            "a single run's (checkpoint.pt)": lambda: timed_epoch(data, lambda s: run.save(s, s["epoch"])),
            "a trial's (artifact store)": lambda: timed_epoch(data, lambda s: saved.save(s, s["epoch"])),
        }
        for each in runs.values():
            each()  # warm-up; the trial's first save records its pointer
        epochs: dict[str, list[float]] = {label: [] for label in runs}
        saves: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(repeats):
            for label, each in runs.items():
                epoch, save = each()
                epochs[label].append(epoch)
                saves[label].append(save)
        size = run.path.stat().st_size
    part = results.part(
        "checkpoint",
        f"the default epoch (batch 128, 1 thread, cpu) and the save of its checkpoint after it, timed apart, "
        f"{repeats} runs each, interleaved; {data.identity}; a checkpoint of LinearNet(32) + Adam: "
        f"{size / 1e6:.2f} MB",
    )
    plain = statistics.median(epochs["no checkpoint"])
    part.row("epoch, no checkpoint", f"median {plain:.3f} s, fastest {min(epochs['no checkpoint']):.3f} s")
    for label in list(runs)[1:]:
        save = statistics.median(saves[label])
        part.row(f"epoch, {label}", f"median {statistics.median(epochs[label]):.3f} s")
        part.check(
            f"(epoch + save) / epoch, {label}",
            f"{(plain + save) / plain:.3f}x (save: median {save * 1000:.1f} ms)",
            f"<= {OVERHEAD_TARGET:.2f}x",
            (plain + save) / plain <= OVERHEAD_TARGET,
        )
    return part


def trial_seconds(trial: FrozenTrial) -> float:
    assert trial.datetime_start is not None and trial.datetime_complete is not None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def bench_resume(results: Results, runner: SweepRunner) -> Part:
    load_mnist(runner.data_dir, runner.workdir / "cache")  # no sweep pays for the disk cache
    storage = runner.storage

    def sweep(name: str) -> float:
        started = time.perf_counter()
        with (runner.workdir / f"{name}.log").open("a") as out:
            subprocess.run(runner.command(name, *FIXED_TRIAL), cwd=runner.workdir, stdout=out, stderr=out)
        return time.perf_counter() - started

    untouched_wall = sweep("resume-untouched")
    name = "resume-killed"
    with (runner.workdir / f"{name}.log").open("w") as out:
        killed = subprocess.Popen(
            runner.command(name, *FIXED_TRIAL),
            cwd=runner.workdir,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own process group: the sweep and its workers are killed
        )

    def reported() -> int:
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except KeyError:
            return 0
        return max((len(t.intermediate_values) for t in trials), default=0)

    while reported() < KILLED_AFTER:
        if killed.poll() is not None:
            raise RuntimeError(f"the sweep to kill ended first: see {runner.workdir / name}.log")
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    at_kill = reported()
    rerun_wall = sweep(name)

    [untouched] = optuna.load_study(study_name="resume-untouched", storage=storage).get_trials()
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    retry = trials[-1]
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    part = results.part(
        "resume",
        f"a sweep of one {EPOCHS}-epoch trial ({' '.join(FIXED_TRIAL)}), SIGKILLed once it had reported "
        f"{at_kill} epochs, then the same command again; {runner.data_dir}",
    )
    part.row("untouched trial", f"{trial_seconds(untouched):.2f} s, value {untouched.value}")
    part.row(
        f"the retry (trial {retry.number}, {retry.state.name})",
        f"{trial_seconds(retry):.2f} s, value {retry.value}, "
        f"{len(retry.intermediate_values)} epochs in the study",
    )
    part.check(
        "the retry's value",
        "equal" if retry.value == untouched.value else f"{retry.value} != {untouched.value}",
        "equal to the untouched trial's",
        retry.value == untouched.value and retry.state == TrialState.COMPLETE,
    )
    ratio = trial_seconds(retry) / trial_seconds(untouched)
    part.check(
        "the retry's time / the untouched trial's",
        f"{ratio:.2f}x",
        f"<= {TIME_TARGET}x",
        ratio <= TIME_TARGET,
    )
    part.check("trials left RUNNING", str(len(running)), "0", not running)
    part.row("the rerun command / the untouched command (wall)", f"{rerun_wall / untouched_wall:.2f}x")
    return part
