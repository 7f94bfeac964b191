"""Scaling out: several sweep processes on one PostgreSQL study, a worker that
dies mid-trial, and parallel trials through the joblib launcher on SQLite.

Every sweep here is a real `python main.py -m ...` in a subprocess, on the
bundled MNIST sample, against a real PostgreSQL server (tests/postgres.py;
the tests that need it skip where it is not installed, or fail with
REQUIRE_POSTGRES=1) or a SQLite file.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from pruning_optuna_sweeper.trial import read_trial_env
from tests.cli import MAIN, main_env, offline_args, run_main
from tests.events import load_events
from tests.sweep_helpers import SHORT_EPOCHS, sqlite_url, sweep_args, trial_run_dir, wait_for

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


class Worker:
    """One `python main.py -m hydra/sweeper=optuna ...` process, its output in files."""

    def __init__(self, workdir: Path, storage: str, *extra: str, n_trials: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.stdout_path = workdir / "stdout.txt"
        self.stderr_path = workdir / "stderr.txt"
        args = [
            "-m",
            "hydra/sweeper=optuna",
            # One trial at a time in each sweep process: several processes on one study.
            "hydra/launcher=basic",
            "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.n_trials={n_trials}",
            *offline_args(workdir),
            *extra,
        ]
        # The documented way to hand over a URL with a password: the environment.
        env = main_env(SWEEP_STORAGE=storage)
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(MAIN), *args], cwd=workdir, env=env, stdout=out, stderr=err, text=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        header = f"--- worker {self.pid} ({self.workdir.name}), exit {self.process.returncode}:\n"
        return header + self.output()[-chars:]


@contextmanager
def workers(count: int, root: Path, storage: str, *extra: str, n_trials: int) -> Iterator[list[Worker]]:
    """Start `count` sweep processes at once; whatever happens, none outlives the block."""
    started: list[Worker] = []
    try:
        for i in range(count):
            started.append(Worker(root / f"worker-{i}", storage, *extra, n_trials=n_trials))
        yield started
    finally:
        for w in started:
            if w.process.poll() is None:
                w.process.kill()
        for w in started:
            with suppress(subprocess.TimeoutExpired):
                w.process.wait(timeout=30)


def wait_all(started: list[Worker], deadline: float) -> None:
    for w in started:
        try:
            w.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "a sweep process did not end in time:\n" + "\n".join(x.tail() for x in started)
            ) from None


def pid_of(trial: FrozenTrial) -> int | None:
    worker = trial.user_attrs.get("worker")
    return int(worker.rsplit(":", 1)[1]) if worker else None


def retry_of(trial: FrozenTrial) -> int | None:
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def summary(trials: list[FrozenTrial]) -> str:
    return "\n".join(
        f"  #{t.number} {t.state.name} worker={t.user_attrs.get('worker')} retry_of={retry_of(t)} "
        f"steps={sorted(t.intermediate_values)} reason={t.user_attrs.get('fail_reason')}"
        for t in trials
    )


def test_three_workers_share_one_postgres_study_and_its_budget(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    password = make_url(fresh_postgres_url).password
    assert password
    # The schema exists before the workers start; workers that all start on an
    # empty database are test_sweep_processes_opening_an_empty_postgres_database_at_once.
    optuna.storages.RDBStorage(fresh_postgres_url)
    # One sweep folder for all, as for workers started from one folder in the same second.
    shared = tmp_path / "multirun"
    with workers(
        3,
        tmp_path,
        fresh_postgres_url,
        SHORT_EPOCHS,
        "hydra.sweeper.total_trials=12",
        "hydra.sweeper.study_name=scale-test",
        f"hydra.sweep.dir={shared}",
        n_trials=12,
    ) as started:
        wait_all(started, time.monotonic() + 150)

    logs = "\n".join(w.tail() for w in started)
    assert [w.process.returncode for w in started] == [0, 0, 0], logs
    trials = optuna.load_study(study_name="scale-test", storage=fresh_postgres_url).get_trials()
    detail = summary(trials) + "\n" + logs
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), detail
    assert len([t for t in trials if t.state in COUNTED]) == 12, detail
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], detail
    # Any other trial is one a worker asked for once the budget was taken.
    for t in trials:
        if t.state not in COUNTED:
            assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("over budget"), (
                detail
            )
    # Each worker samples its own points (seeded from its first trial's number).
    sampled = [tuple(t.params.values()) for t in trials if t.state in COUNTED]
    assert len(set(sampled)) == len(sampled), detail
    counted_by = {pid_of(t) for t in trials if t.state in COUNTED}
    assert counted_by <= {w.pid for w in started}, detail
    # Each launched trial has its own job folder there, named by its number.
    launched = {t.number for t in trials if t.state in COUNTED}
    assert {p.name for p in shared.iterdir() if p.is_dir()} == {str(n) for n in launched}, detail
    for n in launched:
        env = OmegaConf.load(shared / str(n) / ".hydra" / "hydra.yaml").hydra.job.env_set
        named = read_trial_env(env.PRUNING_OPTUNA_TRIAL)
        assert (named["study"], named["number"]) == ("scale-test", n)
        assert int(named["sweep"].rsplit(":", 1)[1]) in {w.pid for w in started}  # the sweep that launched it
    assert len(counted_by) > 1, detail
    for w in started:
        leaks = [line.replace(password, "<PASSWORD>") for line in w.output().splitlines() if password in line]
        assert not leaks, f"worker {w.pid} printed the storage password:\n" + "\n".join(leaks[:3])
        assert "Sweep done" in w.output(), w.tail()
        # The storage is $SWEEP_STORAGE, which the printed commands read themselves: no URL on them.
        assert re.search(r"Watch the study: +\S*python -m pruning_optuna_sweeper.dashboard\n", w.output()), (
            w.tail()
        )
        assert re.search(
            r"Report \(HTML, PNG\): +\S*python -m pruning_optuna_sweeper report scale-test\n", w.output()
        ), w.tail()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not written, f"files holding the storage password: {written}"


def test_a_killed_worker_s_trial_is_failed_and_retried_by_the_others(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    budget, epochs = 6, 10
    # Create the schema up front so that the test can poll the study while the workers start.
    storage = optuna.storages.RDBStorage(fresh_postgres_url)
    # Two workers: the survivor alone fails the dead trial and runs its retry.
    with workers(
        2,
        tmp_path,
        fresh_postgres_url,
        f"params.epoch_count={epochs}",
        "params.batch_size=32",
        "hydra/sweeper/pruner=none",
        f"hydra.sweeper.total_trials={budget}",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=4",
        "hydra.sweeper.study_name=kill-test",
        n_trials=budget,
    ) as started:
        victim = started[0]
        killed: list[FrozenTrial] = []

        def victim_has_a_trial_with_progress() -> bool:
            if victim.process.poll() is not None:
                raise AssertionError(f"the worker to kill ended first:\n{victim.tail()}")
            try:
                study = optuna.load_study(study_name="kill-test", storage=storage)
            except KeyError:
                return False
            # Reported an epoch, and has four more to go: still running when the kill lands.
            running = [
                t
                for t in study.get_trials(states=(TrialState.RUNNING,))
                if pid_of(t) == victim.pid and 1 <= max(t.intermediate_values, default=0) <= epochs - 4
            ]
            killed[:] = running
            return bool(running)

        what = f"a running trial of worker {victim.pid} that reported an epoch"
        wait_for(victim_has_a_trial_with_progress, timeout=90, what=what)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        others = started[1:]
        wait_all(others, time.monotonic() + 120)

    logs = "\n".join(w.tail() for w in started)
    assert victim.process.returncode == -signal.SIGKILL
    assert [w.process.returncode for w in others] == [0] * len(others), logs
    trials = optuna.load_study(study_name="kill-test", storage=fresh_postgres_url).get_trials()
    by_number = {t.number: t for t in trials}
    detail = summary(trials) + "\n" + logs
    (dead,) = killed
    assert by_number[dead.number].state == TrialState.FAIL, detail
    retries = [t for t in trials if retry_of(t) == dead.number]
    assert len(retries) == 1 and retries[0].state in COUNTED, detail
    assert retries[0].params == dead.params, detail
    assert pid_of(retries[0]) in {w.pid for w in others}, detail
    recovered = (
        f"trial {dead.number} of {dead.user_attrs['worker']} stopped sending heartbeats: "
        "marked FAIL and queued again"
    )
    assert any(recovered in w.output() for w in others), detail
    assert len([t for t in trials if t.state in COUNTED]) == budget, detail
    assert not [t for t in trials if t.state == TrialState.RUNNING], detail


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [True, False], ids=["after-sampling", "before-sampling"])
def test_a_trial_whose_worker_died_before_launching_it_is_failed_and_retried(
    tmp_path: Path, sampled: bool
) -> None:
    """The worker asked for the trial (its heartbeat began) and died before training it."""
    storage = optuna.storages.RDBStorage(sqlite_url(tmp_path))
    study = optuna.create_study(study_name="linearnet-mnist-sample", storage=storage, direction="maximize")
    dead = study.ask({"params.lr": FloatDistribution(1e-3, 1e-2, log=True)} if sampled else None)
    dead.set_user_attr("worker", "elsewhere:1")
    study_id = storage.get_study_id_from_name(study.study_name)
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, dead.number))
    storage.engine.dispose()

    # Two places in the budget: the dead trial holds one until it is found stale.
    result = run_main(
        sweep_args(
            tmp_path,
            "params.lr=tag(log, interval(1e-3, 1e-2))",
            "params.batch_size=512",
            "params.epoch_count=1",
            "hydra.sweeper.total_trials=2",
            "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=2",
            n_trials=2,
        ),
        tmp_path,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name=study.study_name, storage=sqlite_url(tmp_path)).get_trials()
    assert trials[0].state == TrialState.FAIL, summary(trials)
    [retry] = [t for t in trials if retry_of(t) == 0]
    assert retry.state == TrialState.COMPLETE, summary(trials)
    if sampled:
        assert retry.params == trials[0].params
    else:  # it died before any parameter was sampled: the retry samples them
        assert set(retry.params) == {"params.lr"}
    assert (
        "trial 0 of elsewhere:1 stopped sending heartbeats: marked FAIL and queued again"
        in result.stdout + result.stderr
    )
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2, summary(trials)
    assert TrialState.RUNNING not in [t.state for t in trials]


@pytest.mark.slow
def test_the_joblib_launcher_runs_trials_in_parallel_on_sqlite(tmp_path: Path) -> None:
    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra/launcher=joblib",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.pruner.n_startup_trials=2",
        # Every trial trains at least two epochs, so that its span below has a length.
        "hydra.sweeper.pruner.n_warmup_steps=2",
        f"storage={sqlite_url(tmp_path)}",
        # Hopeless learning rates next to good ones, so that the median pruner has work.
        "params.lr=tag(log, interval(1e-6, 1e-1))",
        "params.epoch_count=4",
        "params.batch_size=16",  # epochs long enough to coincide, whatever joblib's per-job cost
        *offline_args(tmp_path),
    ]
    result = run_main(args, tmp_path, timeout=150)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "database is locked" not in output
    assert "Warning" not in result.stderr, result.stderr[-3000:]  # none from the workers either
    study = optuna.load_study(study_name="linearnet-mnist-sample", storage=sqlite_url(tmp_path))
    trials = study.get_trials()
    assert len(trials) == 8, summary(trials)
    assert {t.state for t in trials} <= set(COUNTED), summary(trials)
    assert any(t.state == TrialState.PRUNED for t in trials), summary(trials)
    assert len({pid_of(t) for t in trials}) == 1  # one sweep process asked for them all
    # Trials really trained two at a time: from its first epoch's end to its
    # last's (TensorBoard's wall times), some trial overlaps the one before it.
    spans = []
    for t in trials:
        events = load_events(trial_run_dir(tmp_path, study, t.number))
        times = [e.wall_time for e in events.Scalars("accuracy/test")]
        spans.append((min(times), max(times)))
    spans.sort()
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), spans


OPEN_IN_ROUNDS = """
import sys, time
from pathlib import Path
from pruning_optuna_sweeper.storage import StorageError, open_storage
folder, me, urls = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for i, url in enumerate(urls):
    (folder / f"ready-{me}-{i}").touch()
    while not (folder / f"release-{i}").exists():
        time.sleep(0.002)
    try:
        open_storage(url, heartbeat_interval=1, grace_period=4)
    except StorageError as e:
        sys.exit(f"round {i}: {e}")
"""


def open_together(folder: Path, urls: list[str], openers: int = 4) -> None:
    """`openers` processes open each of `urls` in turn, released together once all
    have imported and reached it (the race is in creating Optuna's tables); fails
    with the errors of any that could not."""
    names = [f"opener-{n}" for n in range(openers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_IN_ROUNDS, str(folder), name, *urls],
            cwd=MAIN.parent,
            env=main_env(PYTHONWARNINGS="ignore"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        for i in range(len(urls)):

            def all_ready(i: int = i) -> bool:
                ended = [p for p in processes if p.poll() is not None]
                if ended:
                    raise AssertionError(
                        f"an opener ended in round {i}:\n" + ended[0].communicate()[1][-2000:]
                    )
                return all((folder / f"ready-{name}-{i}").exists() for name in names)

            wait_for(all_ready, timeout=60, what=f"the openers to reach round {i}")
            (folder / f"release-{i}").touch()
        errors = [p.communicate(timeout=60)[1] for p in processes]
    finally:
        for p in processes:
            p.kill()
            p.wait(timeout=10)
    assert [p.returncode for p in processes] == [0] * openers, "\n".join(errors)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_forked_worker_opens_its_own_storage_not_its_parent_s(tmp_path: Path) -> None:
    """joblib's multiprocessing backend forks a worker per trial while the
    sweep's heartbeat thread uses the storage: the trial, which asks for the
    sweep's storage settings, must get its own connections, not its parent's."""
    from pruning_optuna_sweeper.storage import open_storage

    url = sqlite_url(tmp_path)
    parent = open_storage(url, heartbeat_interval=1, grace_period=4)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without pytest's teardown
        child = open_storage(url, heartbeat_interval=1, grace_period=4)
        os.write(write, b"own" if child is not parent and child.get_all_studies() == [] else b"shared")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"own"


@pytest.mark.slow
def test_sweep_processes_opening_an_empty_postgres_database_at_once(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """Workers started together on a new database all create or find Optuna's tables."""
    open_together(tmp_path, [fresh_postgres_url])
    assert optuna.get_all_study_names(fresh_postgres_url) == []


@pytest.mark.slow
def test_sweep_processes_opening_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    """The same race on SQLite, in ten rounds (it is lost now and then), a new file each:
    creating the tables, and switching the file to write-ahead logging."""
    urls = [f"sqlite:///{tmp_path / f'study-{i}.db'}" for i in range(10)]
    open_together(tmp_path, urls)
    assert all(optuna.get_all_study_names(url) == [] for url in urls)


@pytest.mark.slow
def test_a_queued_retry_within_a_full_budget_is_run_not_waited_for(tmp_path: Path) -> None:
    """A retry queued for the last place of total_trials is asked for (the survivor of a kill, a resume)."""
    first = run_main(sweep_args(tmp_path, "params.epoch_count=1", n_trials=2), tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name="linearnet-mnist-sample", storage=sqlite_url(tmp_path))
    study.enqueue_trial(
        {"params.lr": 0.003, "params.batch_size": 64}, user_attrs={"retry_of": 1, "attempt": 2}
    )

    resumed = run_main(
        sweep_args(tmp_path, "params.epoch_count=1", "hydra.sweeper.total_trials=3", n_trials=3),
        tmp_path,
        timeout=60,
    )

    assert resumed.returncode == 0, resumed.stderr
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3, summary(trials)
    assert trials[2].params == {"params.lr": 0.003, "params.batch_size": 64}
