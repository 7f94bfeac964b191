"""Trials as SLURM jobs on a live one-node cluster (tests/slurm.py), reporting to a PostgreSQL study,
or to a journal file in a folder the nodes share (`journal://`: no database server).

Every sweep is a real `python main.py -m hydra/sweeper=optuna hydra/launcher=slurm` in a
subprocess, on the bundled sample: hydra-submitit-launcher submits each trial with sbatch,
and the job finds its trial through the storage URL that SWEEP_STORAGE carries in the
job's environment. One sweep serves several checks (the suite's time is counted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from pruning_optuna_sweeper.study import JOB_ATTR
from tests.cli import MAIN, ROOT, main_env, offline_args, run_main
from tests.postgres import PostgresServer
from tests.slurm import SlurmCluster
from tests.sweep_helpers import wait_for

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

STUDY = "slurm-test"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
LONG, PRUNED_AT = 12, 8


def slurm_sweep_args(
    workdir: Path, *, n_trials: int, total_trials: int, epochs: str = f"choice(1,{LONG})"
) -> list[str]:
    """Two trials at once, each a SLURM job: one epoch, or LONG epochs that a pruner stops after
    PRUNED_AT (the sample never reaches 99.9 %), so that pruning is seen, and a job can be killed
    before it ends. The random sampler's seed 6 draws 1, LONG, 1 epochs for the first three trials."""
    return [
        "-m",
        "hydra/sweeper=optuna",
        "hydra/launcher=slurm",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=5",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.total_trials={total_trials}",
        f"hydra.sweeper.study_name={STUDY}",
        # A killed job is found by its missing heartbeats within seconds.
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=5",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=6",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.lower=0.999",
        f"+hydra.sweeper.pruner.n_warmup_steps={PRUNED_AT}",
        f"params.epoch_count={epochs}",
        f"hydra.sweep.dir={workdir / 'multirun'}",
        *offline_args(workdir),
    ]


@dataclass
class Sweep:
    """A sweep process whose output goes to files, and the SLURM job ids squeue showed meanwhile."""

    workdir: Path
    process: subprocess.Popen[str]
    seen_jobs: set[str] = field(default_factory=set)

    def output(self) -> str:
        return (self.workdir / "stdout.txt").read_text(errors="replace") + (
            self.workdir / "stderr.txt"
        ).read_text(errors="replace")


def start_sweep(workdir: Path, cluster: SlurmCluster, storage: str, args: list[str]) -> Sweep:
    workdir.mkdir(parents=True, exist_ok=True)
    # The password travels in the environment only, and on to the jobs (sbatch exports it).
    # The jobs start in the sweep's folder: PYTHONPATH lets them import the app (main.py's ds/).
    env = main_env(SWEEP_STORAGE=storage, SLURM_CONF=str(cluster.conf), PYTHONPATH=str(ROOT))
    with (workdir / "stdout.txt").open("w") as out, (workdir / "stderr.txt").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, str(MAIN), *args], cwd=workdir, env=env, stdout=out, stderr=err, text=True
        )
    return Sweep(workdir, process)


def watch_squeue(sweep: Sweep, cluster: SlurmCluster) -> threading.Thread:
    """Note every job id squeue shows while the sweep runs."""

    def watch() -> None:
        while sweep.process.poll() is None:
            sweep.seen_jobs.update(job_id for job_id, _ in cluster.jobs())
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def new_database(server: PostgresServer, name: str) -> str:
    with server.connect("postgres") as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


def read_back(storage: str) -> str | BaseStorage:
    """The study's storage as Optuna opens it: a database URL, or a journal file's JournalStorage."""
    if storage.startswith("journal:///"):
        return JournalStorage(JournalFileBackend(storage.removeprefix("journal:///")))
    return storage


def running_with_jobs(storage: str, epochs: int | None = None) -> list[FrozenTrial]:
    """The study's RUNNING trials whose SLURM job has started and recorded its id."""
    try:
        study = optuna.load_study(study_name=STUDY, storage=read_back(storage))
    except (KeyError, FileNotFoundError):  # no study yet; no journal's folder yet
        return []
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if (t.user_attrs.get(JOB_ATTR) or {}).get("trial") == t.number
        and t.user_attrs[JOB_ATTR].get("slurm_job_id")
        and epochs in (None, t.params.get("params.epoch_count"))
    ]


def slurm_job_id(trial: FrozenTrial) -> str:
    return str(trial.user_attrs[JOB_ATTR]["slurm_job_id"])


@dataclass
class FinishedSweep:
    sweep: Sweep
    storage: str
    password: str
    killed: FrozenTrial
    study: optuna.Study


@pytest.fixture(scope="module", params=["postgresql", "journal"])
def slurm_sweep(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    slurm_cluster: SlurmCluster,
    postgres_server: PostgresServer,
) -> FinishedSweep:
    """A sweep of total_trials=3, two jobs at a time, one of whose job processes is killed as soon
    as it runs; n_trials=5 leaves room for the retry. Its study is on the PostgreSQL server, or in
    a journal file in a folder of the sweep's (which the one node shares)."""
    workdir = tmp_path_factory.mktemp(f"slurm-sweep-{request.param}")
    if request.param == "journal":
        storage = f"journal:///{workdir / 'shared' / 'optuna.log'}"
    else:
        storage = new_database(postgres_server, "slurm_sweep")
    sweep = start_sweep(
        workdir, slurm_cluster, storage, slurm_sweep_args(workdir, n_trials=5, total_trials=3)
    )
    watcher = watch_squeue(sweep, slurm_cluster)
    try:
        found: list[FrozenTrial] = []

        def long_trial_running() -> bool:
            found.extend(running_with_jobs(storage, LONG))
            return bool(found) or sweep.process.poll() is not None

        wait_for(long_trial_running, 90, f"a trial of {LONG} epochs running as a SLURM job")
        assert found, sweep.output()[-3000:]
        killed = found[0]
        # Its process on the node killed. (scancel would do, after SLURM's few seconds from SIGTERM,
        # which submitit's job ignores, to SIGKILL: the trial might end first. The Ctrl-C test scancels.)
        os.kill(killed.user_attrs[JOB_ATTR]["pid"], signal.SIGKILL)
        sweep.process.wait(timeout=150)
    finally:
        if sweep.process.poll() is None:
            sweep.process.kill()
            sweep.process.wait()
        watcher.join(timeout=10)
    assert sweep.process.returncode == 0, sweep.output()[-4000:]
    study = optuna.load_study(study_name=STUDY, storage=read_back(storage))
    password = "" if request.param == "journal" else make_url(storage).password or ""
    return FinishedSweep(sweep, storage, password, killed, study)


def test_trials_run_as_slurm_jobs_that_squeue_saw(slurm_sweep: FinishedSweep) -> None:
    trials = slurm_sweep.study.get_trials()
    ran = [t for t in trials if t.state in COUNTED]
    job_ids = {slurm_job_id(t) for t in ran}
    assert len(job_ids) == len(ran), [t.user_attrs.get(JOB_ATTR) for t in ran]
    assert job_ids <= slurm_sweep.sweep.seen_jobs, (job_ids, slurm_sweep.sweep.seen_jobs)
    # A job beats for its own trial: the sweep cannot see it end.
    assert all(t.user_attrs[JOB_ATTR]["beats"] for t in ran)


def test_pruning_works_across_jobs(slurm_sweep: FinishedSweep) -> None:
    trials = slurm_sweep.study.get_trials()
    long = [t for t in trials if t.state in COUNTED and t.params["params.epoch_count"] == LONG]
    short = [t for t in trials if t.state in COUNTED and t.params["params.epoch_count"] == 1]
    assert long and short, [(t.number, t.state.name, t.params) for t in trials]
    for t in long:
        assert t.state == TrialState.PRUNED, t
        assert list(t.intermediate_values) == list(range(1, PRUNED_AT + 1)), t
    assert all(t.state == TrialState.COMPLETE for t in short)


@pytest.mark.filterwarnings("ignore", category=ExperimentalWarning)
def test_a_killed_job_is_retried_and_the_budget_fills_exactly(slurm_sweep: FinishedSweep) -> None:
    trials = {t.number: t for t in slurm_sweep.study.get_trials()}
    killed = trials[slurm_sweep.killed.number]
    assert killed.state == TrialState.FAIL, killed
    retried = RetryHeartbeatStaleTrialCallback.retried_trial_number
    [retry] = [t for t in trials.values() if retried(t) == killed.number]
    assert retry.state in COUNTED and retry.params == killed.params
    assert slurm_job_id(retry) != slurm_job_id(killed)
    assert sum(t.state in COUNTED for t in trials.values()) == 3
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    output = slurm_sweep.sweep.output()
    job = slurm_job_id(killed)
    assert f"trial {killed.number} of SLURM job {job} stopped sending heartbeats" in output


def test_best_of_works_from_the_login_side(slurm_sweep: FinishedSweep, tmp_path: Path) -> None:
    result = run_main(
        [f"best_of={STUDY}", "params.epoch_count=1", *offline_args(tmp_path)],
        tmp_path,
        SWEEP_STORAGE=slurm_sweep.storage,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = slurm_sweep.study.best_trial
    assert f"trial {best.number}" in result.stdout + result.stderr


def test_the_password_is_in_no_job_script_command_line_or_log(slurm_sweep: FinishedSweep) -> None:
    password = slurm_sweep.password
    if slurm_sweep.storage.startswith("journal:"):
        pytest.skip("a journal file's URL holds no password")
    assert password
    assert password not in slurm_sweep.sweep.output()
    written = [p for p in slurm_sweep.sweep.workdir.rglob("*") if p.is_file()]
    assert any(p.name.endswith("_submission.sh") for p in written), written  # the sbatch scripts
    leaks = [p for p in written if password.encode() in p.read_bytes()]
    assert not leaks


def test_ctrl_c_cancels_the_sweeps_jobs_and_leaves_nothing_running(
    tmp_path: Path, slurm_cluster: SlurmCluster, postgres_server: PostgresServer
) -> None:
    storage = new_database(postgres_server, "slurm_interrupt")
    # Trials long enough to be cut short: many epochs (a trial of one value never prunes).
    sweep = start_sweep(
        tmp_path,
        slurm_cluster,
        storage,
        slurm_sweep_args(tmp_path, n_trials=4, total_trials=4, epochs="200"),
    )
    try:
        wait_for(lambda: sweep.process.poll() is not None or len(running_with_jobs(storage)) == 2, 90,
                 "two trials running as SLURM jobs")  # fmt: skip
        running = running_with_jobs(storage)
        job_ids = {slurm_job_id(t) for t in running}
        pids = [t.user_attrs[JOB_ATTR]["pid"] for t in running]
        assert len(job_ids) == 2, sweep.output()[-3000:]
        sweep.process.send_signal(signal.SIGINT)
        sweep.process.wait(timeout=60)
    finally:
        if sweep.process.poll() is None:
            sweep.process.kill()
            sweep.process.wait()
    assert sweep.process.returncode == 130, sweep.output()[-3000:]
    wait_for(lambda: not job_ids & {j for j, _ in slurm_cluster.jobs()}, 30, "its jobs to leave squeue")
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]  # their processes ended too
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert "Cancelled SLURM job" in sweep.output()
    assert "Traceback" not in sweep.output()
