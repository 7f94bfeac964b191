"""The scale, shared and tpe parts: many no-op trials on every shared storage, two sweeps of a
third-party app sharing one budget, and what TPE's own sampling costs as a study grows.

- scale: N no-op trials (noop_task.py, the random sampler, the basic launcher) by 1, 2 and 4 sweep
  processes sharing total_trials=N, on SQLite, a journal file, PostgreSQL and the gRPC proxy
  (`serve`, in front of a journal), with optuna-dashboard polling the study throughout;
- shared: examples/descent, two sweep processes each on journal:// and on grpc:// sharing
  total_trials=200: exactly 200 must count;
- tpe: milliseconds per `ask` of TPESampler at growing study sizes, in memory, with its default
  options and with the ones that bound its cost.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmarks.results import ROOT, Part, Results

NOOP = ROOT / "benchmarks" / "noop_task.py"
WORKERS = (1, 2, 4)
STORAGES = ("sqlite", "journal", "postgresql", "grpc")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
LOCK_ERROR = re.compile(r"database is locked|lock.*timed? ?out|could not obtain lock|LockTimeout", re.I)
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Run:
    count: int  # COMPLETE or PRUNED trials in the study
    failed: int  # FAIL, but for trials asked once the budget was taken (over_budget)
    over_budget: int
    seconds: float  # the first trial's start to the last one's end
    lock_errors: int
    polls: int  # the dashboard's answers while the workers ran
    poll_errors: int
    flat: float | None  # ms per trial of the last tenth over the second tenth (by completion)


def bench_scale(results: Results, workdir: Path, trials: int) -> Part:
    part = results.part(
        "scale",
        f"{trials} no-op trials (benchmarks/noop_task.py, random sampler, basic launcher) by W sweep "
        "processes sharing total_trials, optuna-dashboard polling the study every second; trials/s "
        "from the first trial's start to the last one's end",
    )
    with postgres_or_none(workdir) as postgres:
        for storage in STORAGES:
            if storage == "postgresql" and postgres is None:
                part.row("postgresql", "skipped: no PostgreSQL server binaries here")
                continue
            for workers in WORKERS:
                run = scale_run(workdir / f"scale-{storage}-{workers}", storage, workers, trials, postgres)
                flat = "" if run.flat is None else f"; last/second tenth {run.flat:.2f}x"
                part.check(
                    f"{storage}, {workers} worker{'s' if workers > 1 else ''}",
                    f"{trials / run.seconds:.1f} trials/s ({1000 * run.seconds / trials:.0f} ms a trial); "
                    f"count {run.count}, failed {run.failed} (+{run.over_budget} over budget), lock errors "
                    f"{run.lock_errors}; dashboard "
                    f"{run.polls} polls, {run.poll_errors} errors{flat}",
                    f"exactly {trials}, 0 lock errors",
                    run.count == trials and run.lock_errors == 0,
                )
    return part


def scale_run(folder: Path, storage: str, workers: int, trials: int, postgres: str | None) -> Run:
    folder.mkdir(parents=True)
    journal = folder / "optuna.log"
    url = {
        "sqlite": f"sqlite:///{folder / 'optuna.db'}",
        "journal": f"journal:///{journal}",
        "postgresql": postgres or "",
        "grpc": "",
    }[storage]
    with contextlib.ExitStack() as stack:
        if storage == "grpc":
            port, dashboard_port = stack.enter_context(sweep_server(f"journal:///{journal}", folder))
            url = f"grpc://127.0.0.1:{port}"
        else:
            dashboard_port = stack.enter_context(dashboard(url, folder))
        env = {**os.environ, "SWEEP_STORAGE": url}
        name = f"scale-{storage}-{workers}"
        commands = [noop_sweep(folder / f"worker-{i}", name, trials) for i in range(workers)]
        logs = [(folder / f"worker-{i}.log").open("w") for i in range(workers)]
        poller = Poller(dashboard_port, name)
        poller.start()
        processes = [
            subprocess.Popen(c, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
            for c, log in zip(commands, logs, strict=True)
        ]
        try:
            codes = [p.wait() for p in processes]
        finally:  # an interrupted bench leaves no worker behind
            for p in processes:
                if p.poll() is None:
                    p.terminate()
                    p.wait()
            poller.stop()
        for log in logs:
            log.close()
        output = "".join((folder / f"worker-{i}.log").read_text(errors="replace") for i in range(workers))
        if any(codes):
            raise RuntimeError(f"{storage}, {workers} workers: exit codes {codes}:\n{output[-3000:]}")
        on_file = storage in ("journal", "grpc")  # the server's own storage is the journal
        study = optuna.load_study(study_name=name, storage=read_journal(journal) if on_file else url)
        trials_ = study.get_trials(deepcopy=False)
    counted = [t for t in trials_ if t.state in COUNTED]
    started = min(t.datetime_start for t in counted)
    ended = max(t.datetime_complete for t in counted)
    return Run(
        count=len(counted),
        failed=sum(t.state == TrialState.FAIL and not over_budget(t) for t in trials_),
        over_budget=sum(over_budget(t) for t in trials_),
        seconds=(ended - started).total_seconds(),
        lock_errors=len(LOCK_ERROR.findall(output)),
        polls=poller.polls,
        poll_errors=poller.errors,
        flat=flatness(counted) if workers == 1 else None,
    )


def over_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial asked for once total_trials was taken: failed at once by its sweep, never run."""
    return str(trial.user_attrs.get("fail_reason", "")).startswith("over budget")


def noop_sweep(folder: Path, study: str, trials: int) -> list[str]:
    """A sweep process of no-op trials sharing `study` (its storage read from $SWEEP_STORAGE)."""
    return [
        sys.executable,
        str(NOOP),
        "-m",
        "hydra/sweeper=pruning_optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.storage=${oc.env:SWEEP_STORAGE}",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.total_trials={trials}",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.job_output=file",
        f"hydra.sweep.dir={folder}",
        "params.lr=tag(log, interval(1e-5, 1e-1))",
    ]


def flatness(counted: list[optuna.trial.FrozenTrial]) -> float | None:
    """ms per trial over the last tenth of the trials (by completion) / over the second tenth."""
    ends = sorted(t.datetime_complete for t in counted)
    tenth = len(ends) // 10
    if tenth < 2:
        return None
    second = (ends[2 * tenth - 1] - ends[tenth - 1]).total_seconds()
    last = (ends[-1] - ends[-tenth - 1]).total_seconds()
    return last / second if second > 0 else None


def read_journal(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


class Poller:
    """Asks the dashboard for the study's trials every second, as an open browser tab does."""

    def __init__(self, port: int, study: str) -> None:
        self.port, self.study = port, study
        self.polls = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _get(self, route: str) -> object:
        with HTTP.open(f"http://127.0.0.1:{self.port}{route}", timeout=30) as response:
            return json.loads(response.read())

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                studies = self._get("/api/studies")["study_summaries"]  # type: ignore[index]
                ids = [s["study_id"] for s in studies if s["study_name"] == self.study]
                if ids:
                    self._get(f"/api/studies/{ids[0]}?after=0")
                self.polls += 1
            except Exception:
                self.errors += 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def background(command: list[str], folder: Path, ports: list[int], env: dict[str, str]) -> Iterator[None]:
    log = folder / f"server-{ports[0]}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for port in ports:
            wait_port(port, process, log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def dashboard(url: str, folder: Path) -> Iterator[int]:
    """`python -m pruning_optuna_sweeper.dashboard` on the storage ($SWEEP_STORAGE: no password on argv)."""
    port = free_port()
    command = [sys.executable, "-m", "pruning_optuna_sweeper.dashboard", "--port", str(port)]
    with background(command, folder, [port], {**os.environ, "SWEEP_STORAGE": url}):
        yield port


@contextlib.contextmanager
def sweep_server(url: str, folder: Path) -> Iterator[tuple[int, int]]:
    """`python -m pruning_optuna_sweeper serve` on `url`: its gRPC port and its dashboard's."""
    port, dashboard_port = free_port(), free_port()
    command = [sys.executable, "-m", "pruning_optuna_sweeper", "serve", "--storage", url]
    command += ["--port", str(port), "--dashboard-port", str(dashboard_port)]
    with background(command, folder, [port, dashboard_port], dict(os.environ)):
        yield port, dashboard_port


@contextlib.contextmanager
def postgres_or_none(workdir: Path) -> Iterator[str | None]:
    """A PostgreSQL server of its own for the part (the tests' helper), or None where there is none."""
    sys.path.insert(0, str(ROOT))
    from tests import postgres

    bin_dir = postgres.find_bin_dir()
    if bin_dir is None:
        yield None
        return
    cluster = postgres._Cluster(bin_dir)
    try:
        password = "pw-" + os.urandom(8).hex()
        cluster.initdb(postgres.SUPERUSER, password)
        port = cluster.start()
        server = postgres.PostgresServer("127.0.0.1", port, postgres.SUPERUSER, password, "scale")
        with server.connect("postgres") as connection:
            connection.execute('CREATE DATABASE "scale"')
        yield server.url()
    finally:
        cluster.stop()
        cluster.remove()


SHARED_BUDGET = 200


def bench_shared(results: Results, workdir: Path) -> Part:
    """examples/descent copied out of the repository; two sweep processes sharing total_trials=200."""
    part = results.part(
        "shared",
        f"examples/descent (an app of its own, copied out), two sweep processes sharing "
        f"total_trials={SHARED_BUDGET}, 2 trials at once each (pool launcher), random sampler, 3 steps",
    )
    app = workdir / "descent"
    shutil.copytree(ROOT / "examples" / "descent", app, ignore=shutil.ignore_patterns("multirun", "outputs"))
    for kind in ("journal", "grpc"):
        journal = app / f"{kind}.log"
        with contextlib.ExitStack() as stack:
            url = f"journal:///{journal}"
            if kind == "grpc":
                port, _ = stack.enter_context(sweep_server(url, app))
                url = f"grpc://127.0.0.1:{port}"
            started = time.perf_counter()
            processes = [
                subprocess.Popen(
                    descent_sweep(url, app / "multirun" / f"{kind}-{i}"),
                    cwd=app,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for i in range(2)
            ]
            outputs = [p.communicate()[0] for p in processes]
            seconds = time.perf_counter() - started
        if any(p.returncode for p in processes):
            raise RuntimeError(f"{kind}: a sweep failed:\n{outputs[0][-2000:]}\n{outputs[1][-2000:]}")
        study = optuna.load_study(study_name="shared", storage=read_journal(journal))
        count = sum(t.state in COUNTED for t in study.get_trials(deepcopy=False))
        launched = [re.findall(r"launched (\d+) trial", o)[-1] for o in outputs]
        part.check(
            f"{kind}:// ({'python -m pruning_optuna_sweeper serve' if kind == 'grpc' else 'one file'})",
            f"{count} COMPLETE or PRUNED in {seconds:.1f} s (launched {' + '.join(launched)})",
            f"exactly {SHARED_BUDGET}",
            count == SHARED_BUDGET,
        )
    return part


def descent_sweep(url: str, folder: Path) -> list[str]:
    return [
        sys.executable,
        "descent.py",
        "-m",
        "hydra/sweeper=pruning_optuna",
        "hydra/sweeper/sampler=random",
        "hydra/launcher=pool",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.n_trials={SHARED_BUDGET}",
        f"hydra.sweeper.total_trials={SHARED_BUDGET}",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweep.dir={folder}",
        "steps=3",
        "lr=tag(log, interval(1e-5, 1e-2))",
    ]


# TPESampler's options compared: its defaults, then settings that change its cost; the random sampler.
TPE_SETTINGS: dict[str, dict[str, object] | None] = {
    "TPE defaults": {},
    "multivariate=True": {"multivariate": True},
    "constant_liar=True, 4 trials running": {"constant_liar": True},
    "n_ei_candidates=8": {"n_ei_candidates": 8},
    "RandomSampler, for comparison": None,
}
ASKS = 40


def bench_tpe(results: Results, trials: int) -> Part:
    """Median ms per ask (sampling 3 parameters) at study sizes, in memory: the sampler's own cost."""
    sizes = [s for s in (100, 1000, 3000, 10000) if s <= trials]
    part = results.part(
        "tpe",
        "the sampler's own cost: median ms per ask and tell of 3 parameters (log float, int, "
        f"categorical), seed 0, in an in-memory study of {', '.join(map(str, sizes))} finished trials",
    )
    for label, options in TPE_SETTINGS.items():
        costs = ask_costs(options, sizes, running=4 if (options or {}).get("constant_liar") else 0)
        part.row(label, ", ".join(f"{size}: {ms:.1f}" for size, ms in costs.items()))
    return part


def ask_costs(options: dict[str, object] | None, sizes: list[int], running: int) -> dict[int, float]:
    """Median ms per ask and tell at each study size; `running` trials left in flight meanwhile."""
    import statistics
    import warnings

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    sampler = (
        optuna.samplers.RandomSampler(seed=0)
        if options is None
        else optuna.samplers.TPESampler(seed=0, **options)  # type: ignore[arg-type]
    )
    study = optuna.create_study(sampler=sampler)
    rng = random.Random(0)
    costs = {}
    for target in sizes:
        # Filled with random values told at once (not sampled: only the measured asks cost time).
        missing = target - len(study.get_trials(deepcopy=False))
        study.add_trials([finished(rng) for _ in range(max(0, missing))])
        pending = [study.ask(DISTRIBUTIONS) for _ in range(running)]  # in flight, for constant_liar
        times = []
        for _ in range(ASKS):
            started = time.perf_counter()
            trial = study.ask(DISTRIBUTIONS)
            study.tell(trial, rng.random())
            times.append(time.perf_counter() - started)
        costs[target] = statistics.median(times) * 1000
        for trial in pending:
            study.tell(trial, rng.random())
    return costs


def finished(rng: random.Random) -> optuna.trial.FrozenTrial:
    params = {"lr": 10 ** rng.uniform(-5, -1), "batch": rng.randint(32, 512), "model": rng.choice("abc")}
    return optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=rng.random())


DISTRIBUTIONS = {
    "lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
    "batch": optuna.distributions.IntDistribution(32, 512),
    "model": optuna.distributions.CategoricalDistribution(("a", "b", "c")),
}
