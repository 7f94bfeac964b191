"""Running `main.py -m hydra/sweeper=optuna` from the benchmark: one sweep or several
processes on one study, all output in the work folder, timed, with the CPU time of
the sweep and every process it waited for, and the study's figures read back."""

from __future__ import annotations

import random
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from benchmarks.results import ROOT
from ds.data import load_mnist

MAIN = ROOT / "main.py"
# The default search space's ranges (conf/hydra/sweeper/optuna.yaml), for queued trials.
BATCH_SIZES = (32, 64, 128, 256, 512)
MAX_EPOCHS = 10


@dataclass
class Sweep:
    name: str
    wall: float  # seconds, the sweep processes' start to their end
    cpu: float  # CPU seconds (user + system) of the sweep processes and the children they waited for
    trials: int
    pruned: int
    failed: int
    epochs: int  # epochs trained, all trials
    epoch_s: float  # the sum of the epochs' own times (their `Time:` lines)
    best: float
    phase: float  # seconds from the first trial's start to the last one's end

    @property
    def utilisation(self) -> float:
        return self.cpu / self.wall


def trial_phase(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Seconds from the first trial's start (when it is asked for) to the last
    one's end: the wall time less the sweep processes' own start-up and
    wind-down. Joblib's workers start within it, after their first trials are asked for."""
    finished = [t for t in trials if t.datetime_start and t.datetime_complete]
    return (
        max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    ).total_seconds()


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended and been waited for (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class SweepRunner:
    """Sweeps on `data_dir`, each in its own study of one SQLite file in `workdir`.

    `trials` and `max_epochs` shrink every sweep for a smoke run (n_trials,
    and the epoch_count range); a sweep already run with the same overrides
    in this benchmark run is not run again (the parts share the default sweep).
    """

    def __init__(
        self, data_dir: Path, workdir: Path, trials: int | None = None, max_epochs: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.workdir = workdir
        self.trials = trials
        self.max_epochs = max_epochs
        self.storage = f"sqlite:///{workdir / 'bench.db'}"
        self._done: dict[tuple[str, ...], Sweep] = {}
        self._names: set[str] = set()

    def shrink(self, overrides: tuple[str, ...]) -> list[str]:
        """The smoke-run settings, for the keys `overrides` does not set itself."""
        given = {o.split("=", 1)[0] for o in overrides}
        extra = []
        if self.trials is not None and "hydra.sweeper.n_trials" not in given:
            extra.append(f"hydra.sweeper.n_trials={self.trials}")
        if self.max_epochs is not None and "params.epoch_count" not in given:
            fixed = self.max_epochs == 1
            extra.append(
                "params.epoch_count=1" if fixed else f"params.epoch_count=int(interval(1,{self.max_epochs}))"
            )
        return extra

    def command(
        self, name: str, *overrides: str, script: Path = MAIN, sweep_dir: str | None = None
    ) -> list[str]:
        """A sweep into study `name`, all its output in the work folder."""
        return [
            sys.executable,
            str(script),
            "-m",
            "hydra/sweeper=optuna",
            f"paths.data={self.data_dir}",
            f"paths.cache={self.workdir / 'cache'}",
            f"paths.log={self.workdir / 'runs'}",
            f"storage={self.storage}",
            f"hydra.sweeper.study_name={name}",
            "progress=false",
            f"hydra.sweep.dir={self.workdir / 'multirun' / (sweep_dir or name)}",
            *self.shrink(overrides),
            *overrides,
        ]

    def run(self, name: str, *overrides: str, processes: int = 1, queue: int = 0, repeat: int = 0) -> Sweep:
        """The sweep of `overrides` (`processes` of them at once on one study, which holds `queue`
        queued trials first), or its figures if already run (`repeat`: another run of the same)."""
        key = (str(processes), str(queue), str(repeat), *overrides)
        if key in self._done:
            return self._done[key]
        if not self._names:  # the disk cache of the data, so that no sweep pays for making it
            load_mnist(self.data_dir, self.workdir / "cache")
        name = next(n for n in (name, *(f"{name}-{i}" for i in range(2, 1000))) if n not in self._names)
        self._names.add(name)
        if queue:
            self.queue(name, queue)
        logs = [self.workdir / f"{name}-{i}.log" for i in range(processes)]
        cpu_before = children_cpu()
        started = time.perf_counter()
        running = []
        for i, log in enumerate(logs):
            with log.open("w") as out:
                sweep_dir = name if processes == 1 else f"{name}-{i}"
                command = self.command(name, *overrides, sweep_dir=sweep_dir)
                running.append(
                    subprocess.Popen(command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
                )
        codes = [p.wait() for p in running]
        wall = time.perf_counter() - started
        cpu = children_cpu() - cpu_before
        if any(codes):
            tails = "\n".join(log.read_text()[-3000:] for log, code in zip(logs, codes, strict=False) if code)
            raise RuntimeError(f"sweep {name} failed ({' '.join(self.command(name, *overrides))}):\n{tails}")
        # The trials' own lines are in their log files (the app's sweeps: job_output=file).
        sweep_dirs = [name] if processes == 1 else [f"{name}-{i}" for i in range(processes)]
        trial_logs = [
            log for d in sweep_dirs for log in sorted((self.workdir / "multirun" / d).glob("*/main.log"))
        ]
        output = "".join(log.read_text() for log in [*logs, *trial_logs])
        epoch_s = sum(float(s) for s in re.findall(r"\[Epoch: \d+/\d+\].*Time: ([0-9.]+)s", output))
        trials = optuna.load_study(study_name=name, storage=self.storage).get_trials()
        states = [t.state for t in trials]
        complete = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        result = Sweep(
            name=name,
            wall=wall,
            cpu=cpu,
            trials=len(trials),
            pruned=states.count(optuna.trial.TrialState.PRUNED),
            failed=states.count(optuna.trial.TrialState.FAIL),
            epochs=sum(len(t.intermediate_values) for t in trials),
            epoch_s=epoch_s,
            best=max(complete) if complete else float("nan"),
            phase=trial_phase(trials),
        )
        self._done[key] = result
        return result

    def queue(self, name: str, count: int, seed: int = 0) -> None:
        """Create study `name` holding `count` queued trials drawn at random from
        the default search space, so that every configuration runs the same ones
        (epoch_count at most `max_epochs`; left to the sweep when that is 1)."""
        draw = random.Random(seed)
        study = optuna.create_study(study_name=name, storage=self.storage, direction="maximize")
        for _ in range(count):
            params = {
                "params.lr": 10 ** draw.uniform(-4, -1),
                "params.batch_size": draw.choice(BATCH_SIZES),
                "params.epoch_count": draw.randint(1, self.max_epochs or MAX_EPOCHS),
            }
            if self.max_epochs == 1:
                del params["params.epoch_count"]
            study.enqueue_trial(params)
