"""Resuming: a stopped training goes on bit for bit; the task API's checkpoints, safe writes and retries.

The training tests run ds.train on the bundled sample, the state going through a real checkpoint
file (pruning_optuna_sweeper.checkpoint); the task API's are on a real SQLite study, a real
FileSystemArtifactStore and Optuna's own retry callback.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import optuna
import pytest
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ds.build import build_model, optimizer_factory
from ds.data import MNIST_SAMPLE, load_mnist
from ds.train import train
from pruning_optuna_sweeper.checkpoint import CHECKPOINT_ATTR, RunCheckpoint, TrialCheckpoint
from tests.cli import MAIN, epoch_lines, main_env, offline_args, run_main
from tests.postgres import PostgresServer
from tests.slurm import SlurmCluster
from tests.sweep_helpers import load, run_sweep, sweep_args, trial_log, wait_for
from tests.test_slurm import STUDY, new_database, slurm_job_id, slurm_sweep_args, start_sweep
from tests.test_training import composed

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(sample_dir: Path):
    """The bundled sample, trained on with one torch thread as the app does (`threads: 1`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    torch.set_num_threads(threads)


class Stop(Exception):
    """Ends a training after an epoch, as a killed process would."""


def train_with(sample, cfg, epochs: int, seed: int, **kwargs):
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    history = train(
        sample,
        model,
        optimizer_factory(cfg.optimizer, lr=cfg.params.lr),
        batch_size=cfg.params.batch_size,
        epoch_count=epochs,
        seed=cfg.seed,
        **kwargs,
    )
    return model, history


@pytest.mark.parametrize(
    "overrides",
    [
        (),  # the fast path: LinearNet + Adam on the CPU
        ("model=mlp", "model.hidden=[64]", "model.dropout=0.3", "optimizer=adamw"),  # autograd; dropout's RNG
        ("optimizer=sgd", "params.lr=0.05"),  # autograd, SGD with momentum state
    ],
)
def test_a_training_resumed_from_its_checkpoint_ends_with_the_same_weights_bit_for_bit(
    sample,
    tmp_path: Path,
    overrides: tuple[str, ...],
) -> None:
    cfg = composed("params.batch_size=128", *overrides)
    untouched, full = train_with(sample, cfg, 4, cfg.seed)

    saved = RunCheckpoint(tmp_path)

    def stop_after_2(metrics) -> None:
        if metrics.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_with(
            sample, cfg, 4, cfg.seed, on_state=lambda s: saved.save(s, s["epoch"]), on_epoch=[stop_after_2]
        )
    step, state = saved.load()
    assert step == 2
    # Built from another seed: all it goes on with comes from the file.
    resumed, history = train_with(sample, cfg, 4, cfg.seed + 1, resume=state)

    assert [m.epoch for m in history] == [2, 3, 4]  # the resumed epoch's callbacks heard again first
    assert (history[0].test_accuracy, history[0].train_loss) == (full[1].test_accuracy, full[1].train_loss)
    assert untouched.state_dict().keys() == resumed.state_dict().keys()
    for name, weights in untouched.state_dict().items():
        assert torch.equal(weights, resumed.state_dict()[name]), name
    assert history[-1].test_accuracy == full[-1].test_accuracy
    assert history[-1].train_loss == full[-1].train_loss


def test_a_state_of_another_model_is_not_resumed_and_training_starts_over(
    sample,
    caplog: pytest.LogCaptureFixture,
) -> None:
    states = []
    train_with(sample, composed("model.hidden=16"), 1, 0, on_state=states.append)
    cfg = composed("params.epoch_count=2")
    with caplog.at_level(logging.WARNING, logger="ds.train"):
        _, history = train_with(sample, cfg, 2, 0, resume=states[-1])
    assert [m.epoch for m in history] == [1, 2]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "ds.train"]
    assert "checkpoint not used (its weights are another model's)" in warning


# --- the task API: a trial's checkpoint in its artifact store ------------------------------------


STORAGES: dict[str, optuna.storages.RDBStorage] = {}


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    STORAGES[str(tmp_path)] = storage
    return optuna.create_study(study_name="checkpoints", storage=storage, direction="maximize")


def checkpoints_of(study: optuna.Study, trial: optuna.Trial, folder: Path) -> TrialCheckpoint:
    """The trial's checkpoints in the store at `folder` (beside the study file), as current_trial has them."""
    folder.mkdir(exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(folder))
    storage = STORAGES[str(folder.parent)]
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    return TrialCheckpoint(trial, storage, trial_id, store, {"folder": str(folder.resolve())})


def test_each_save_replaces_the_last_and_a_retry_on_its_node_finds_it_with_its_values(
    study: optuna.Study, tmp_path: Path
) -> None:
    store = tmp_path / "artifacts"
    first = study.ask()
    saved = checkpoints_of(study, first, store)
    for epoch in (1, 2, 3):
        saved.save({"epoch": epoch, "weights": torch.full((3,), float(epoch))}, epoch)
        first.report(0.5 + epoch / 10, epoch)
    assert len(list(store.iterdir())) == 2  # two files written in turn: the older ones overwritten
    assert saved.load()[0] == 3
    # Its worker dies: Optuna's own retry (as the sweep's stale-heartbeat and lost-job retries).
    frozen = study.tell(first, state=TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=1, inherit_intermediate_values=True)(study, frozen)
        retry = study.ask()
        assert (
            RetryHeartbeatStaleTrialCallback.retried_trial_number(study.trials[retry.number]) == first.number
        )
    retried = checkpoints_of(study, retry, store)
    step, state = retried.load()
    assert step == 3 and torch.equal(state["weights"], torch.full((3,), 3.0))
    assert study.trials[retry.number].intermediate_values == {1: 0.6, 2: 0.7, 3: 0.8}
    retried.save({"epoch": 4}, 4)
    assert len(list(store.iterdir())) == 1  # the retry's own; those it resumed from removed


def test_an_interrupted_trial_s_retry_gets_its_values_up_to_the_checkpoint(
    study: optuna.Study, tmp_path: Path
) -> None:
    first = study.ask()
    saved = checkpoints_of(study, first, tmp_path / "artifacts")
    for epoch in (1, 2):
        saved.save({"epoch": epoch}, epoch)
        first.report(epoch / 10, epoch)
    frozen = study.tell(first, state=TrialState.FAIL)
    # The sweep's interrupt retry: enqueued with the trial's user attrs, without its values.
    study.enqueue_trial(frozen.params, user_attrs=dict(frozen.user_attrs))
    retry = study.ask()
    retried = checkpoints_of(study, retry, tmp_path / "artifacts")
    assert retried.load() == (2, {"epoch": 2})
    assert study.trials[retry.number].intermediate_values == {1: 0.1, 2: 0.2}
    retried.save({"epoch": 3}, 3)
    retried.discard()
    assert not list((tmp_path / "artifacts").iterdir())
    assert study.trials[retry.number].user_attrs[CHECKPOINT_ATTR] is None


class Payload:
    """A class a pickle would import and build: torch.load(weights_only=True) must not."""

    built: ClassVar[list[str]] = []

    def __reduce__(self) -> tuple[object, ...]:
        return (Payload.built.append, ("code ran",))


def test_a_damaged_or_foreign_checkpoint_is_one_warning_and_a_fresh_start(
    study: optuna.Study, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trial = study.ask()
    saved = checkpoints_of(study, trial, tmp_path / "artifacts")
    saved.save({"epoch": 1, "weights": torch.zeros(100)}, 1)
    [first] = (tmp_path / "artifacts").iterdir()
    with caplog.at_level(logging.WARNING, logger="pruning_optuna_sweeper.checkpoint"):
        saved.save({"epoch": 2, "weights": torch.ones(100)}, 2)
        [second] = set((tmp_path / "artifacts").iterdir()) - {first}
        damage(second)  # a write cut short: the one before is still whole
        assert saved.load()[0] == 1
        damage(first)
        assert saved.load() is None
        # A run folder's checkpoint.pt that torch did not write, and one that would run code.
        run = RunCheckpoint(tmp_path / "run")
        run.path.parent.mkdir()
        run.path.write_bytes(b"not a checkpoint")
        assert run.load() is None
        torch.save({"format": "x", "state": Payload()}, run.path)
        assert run.load() is None
        torch.save({"epoch": 1}, run.path)
        assert run.load() is None
    assert Payload.built == []
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 5, warned
    assert warned[0].endswith(
        "is damaged (its bytes differ from those saved): "
        "the trial resumes from the checkpoint of step 1 before it"
    )
    assert warned[1].count("is damaged") == 2
    assert all(w.endswith("the trial starts over from its first step") for w in warned[1:])
    assert "not a file torch reads safely" in warned[2] and "not a file torch reads safely" in warned[3]
    assert "was not written by save_checkpoint" in warned[4]


def damage(file: Path) -> None:
    body = bytearray(file.read_bytes())
    body[len(body) // 2] ^= 0xFF
    file.write_bytes(bytes(body))


def test_a_run_checkpoint_is_written_whole_and_removed_when_discarded(tmp_path: Path) -> None:
    run = RunCheckpoint(tmp_path)
    run.save({"weights": torch.arange(4.0)}, 7)
    run.save({"weights": torch.arange(5.0)}, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
    step, state = run.load()
    assert step == 8 and torch.equal(state["weights"], torch.arange(5.0))
    run.discard()
    assert not list(tmp_path.iterdir()) and run.load() is None


# --- a real sweep stopped and rerun; a single run killed and resumed -----------------------------

RESUMED = re.compile(r"resumed from the checkpoint of epoch (\d+)/(\d+)")
TRAINING = ["params.lr=0.003", "params.epoch_count=10", "params.batch_size=16"]
FIXED_TRIAL = [*TRAINING, "hydra/sweeper/pruner=none"]


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, which a test run started in the background without job control has ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stopped_midway(args: list[str], workdir: Path, signum: int, progress: Callable[[], int | None]) -> int:
    """`python main.py args` in `workdir`, sent `signum` once `progress()` (epochs done) is 2 to 7 of 10;
    its exit status."""
    workdir.mkdir(exist_ok=True)
    with (workdir / "stopped.txt").open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(MAIN), *args],
            cwd=workdir,
            env=main_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_as_from_a_terminal,
        )
    try:
        wait_for(lambda: 2 <= (progress() or 0) <= 7, timeout=120, what="a trial or run midway")
        process.send_signal(signum)
        return process.wait(timeout=60)
    finally:
        process.kill()
        process.wait(timeout=10)


def epochs_reported(workdir: Path) -> int | None:
    try:
        trials = load(workdir).get_trials(states=(TrialState.RUNNING,))
    except KeyError:
        return None
    return max((max(t.intermediate_values, default=0) for t in trials), default=None)


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> tuple[FrozenTrial, Path]:
    """The FIXED_TRIAL sweep's trial, run to its end without a stop, and its model.pt (which a single
    run of the same config trains alike: the same code, config and seed)."""
    workdir = tmp_path_factory.mktemp("untouched")
    reference = run_sweep(workdir, *FIXED_TRIAL, n_trials=1)
    assert reference.returncode == 0, reference.stderr
    [trial] = load(workdir).get_trials()
    [model] = workdir.glob("multirun/*/*/0/model.pt")
    return trial, model


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_stopped_sweep_s_trial_resumes_on_rerun_and_ends_as_an_untouched_one(
    tmp_path: Path, signum: int, untouched: tuple[FrozenTrial, Path]
) -> None:
    untouched_trial = untouched[0]
    stopped = tmp_path / "stopped"
    status = stopped_midway(
        sweep_args(stopped, *FIXED_TRIAL, n_trials=1), stopped, signum, lambda: epochs_reported(stopped)
    )
    assert status == (-signum if signum == signal.SIGKILL else 128 + signum)
    if signum == signal.SIGINT:
        assert "The rerun resumes trial 0 from its last checkpoint." in (stopped / "stopped.txt").read_text()
    rerun = run_sweep(stopped, *FIXED_TRIAL, n_trials=1)
    assert rerun.returncode == 0, rerun.stderr

    first, retry = load(stopped).get_trials()
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.value == untouched_trial.value
    assert retry.intermediate_values == untouched_trial.intermediate_values  # the whole curve
    log = trial_log(stopped, retry.number)
    [(epoch, of)] = RESUMED.findall(log)
    assert of == "10" and int(epoch) >= 2
    assert [e for e, *_ in epoch_lines(log)] == list(range(int(epoch), 11))  # its epoch's line, the rest
    # The checkpoints are gone once the trial has its result; its model stays.
    stored = [p.name for p in (stopped / "study-artifacts").iterdir()]
    assert stored and not [name for name in stored if name.startswith("checkpoint-")]


def test_a_killed_single_run_continues_with_resume_and_ends_with_an_untouched_run_s_model_bit_for_bit(
    tmp_path: Path, untouched: tuple[FrozenTrial, Path]
) -> None:
    stopped = tmp_path / "stopped"
    args = [*offline_args(tmp_path), *TRAINING]
    status = stopped_midway(
        args, stopped, signal.SIGKILL, lambda: len(epoch_lines((stopped / "stopped.txt").read_text()))
    )
    assert status == -signal.SIGKILL
    [folder] = (stopped / "outputs").glob("*/*")
    assert (folder / "checkpoint.pt").is_file() and not (folder / "model.pt").exists()

    resumed = run_main([f"resume={folder.relative_to(stopped)}"], stopped)
    assert resumed.returncode == 0, resumed.stderr

    [(epoch, _)] = RESUMED.findall(resumed.stdout + resumed.stderr)
    assert [e for e, *_ in epoch_lines(resumed.stdout + resumed.stderr)] == list(range(int(epoch), 11))
    assert [p.name for p in (stopped / "outputs").glob("*/*")] == [folder.name]  # in the run's own folder
    assert not (folder / "checkpoint.pt").exists()  # removed once the run finished
    reached = torch.load(folder / "model.pt", weights_only=True)
    expected = torch.load(untouched[1], weights_only=True)
    assert reached["metrics"]["test_accuracy"] == expected["metrics"]["test_accuracy"] == untouched[0].value
    for name, weights in expected["state_dict"].items():
        assert torch.equal(weights, reached["state_dict"][name]), name

    # Nothing to continue: the finished run's folder, a folder that is no run's, a sweep.
    for refused_args, expected_error in (
        ([f"resume={folder}"], f"error: resume='{folder}': the run left no checkpoint.pt (it finished"),
        ([f"resume={tmp_path}"], f"error: resume='{tmp_path}': expected the folder of a run"),
        (["-m", f"resume={folder}"], f"error: resume='{folder}' continues a single run; expected no -m"),
    ):
        refused = run_main(refused_args, stopped)
        assert refused.returncode == 1 and refused.stderr.startswith(expected_error), refused.stderr
        assert "Traceback" not in refused.stderr


# --- SLURM: a trial longer than its job's time limit, through submitit's requeue ---------------------


# Epochs of the sample at batch size 16 that take longer than a minute on one CPU, even an idle one
# (0.1 s each; 0.3 s on a busy machine, which takes more requeues).
REQUEUED_EPOCHS = 600


def release_requeued_jobs(
    cluster: SlurmCluster, sweep_process: subprocess.Popen[str], released: set[str]
) -> None:
    """Start each requeued job at once: SLURM holds one back 120 s (Reason=BeginTime), a wait this test
    skips; submitit's requeue itself is untouched."""
    while sweep_process.poll() is None:
        for job_id, state in cluster.jobs():
            shown = cluster.run("scontrol", "show", "job", job_id).stdout
            if state == "PENDING" and "Reason=BeginTime" in shown and "Restarts=" in shown:
                cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
                released.add(job_id)
        time.sleep(0.5)


def test_a_trial_longer_than_its_slurm_time_limit_finishes_through_requeues_complete_once(
    tmp_path: Path, slurm_cluster: SlurmCluster, postgres_server: PostgresServer
) -> None:
    storage = new_database(postgres_server, "slurm_requeue")
    replaced = {
        "hydra.launcher.timeout_min": "1",  # SLURM's shortest limit
        "hydra.sweeper.grace_period": "60",  # a requeued job is beating again within it
        "params.epoch_count": str(REQUEUED_EPOCHS),
    }
    args = [  # no pruner: the whole trial runs
        a
        for a in slurm_sweep_args(tmp_path, n_trials=1, total_trials=1)
        if a.split("=")[0] not in replaced and "hydra.sweeper.pruner." not in a
    ]
    args += [f"{key}={value}" for key, value in replaced.items()]
    # USR2 within the limit's last 30 s; as many requeues as the runs take.
    args += ["hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=20"]
    args += ["params.batch_size=16", "params.lr=0.003"]
    sweep = start_sweep(tmp_path, slurm_cluster, storage, args)
    released: set[str] = set()
    releaser = threading.Thread(
        target=release_requeued_jobs, args=(slurm_cluster, sweep.process, released), daemon=True
    )
    releaser.start()
    try:
        sweep.process.wait(timeout=600)
    finally:
        if sweep.process.poll() is None:
            sweep.process.kill()
            sweep.process.wait()
        releaser.join(timeout=30)
    assert sweep.process.returncode == 0, sweep.output()[-4000:]
    [trial] = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert trial.state == TrialState.COMPLETE, trial
    assert sorted(trial.intermediate_values) == list(range(1, REQUEUED_EPOCHS + 1))  # each epoch once
    assert (trial.datetime_complete - trial.datetime_start).total_seconds() > 60  # longer than its limit
    job = slurm_job_id(trial)
    assert released == {job}
    logs = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "multirun" / ".submitit").rglob("*.out")
    )
    assert f"Requeued job {job}" in logs, logs[-3000:]
    [log_file] = (tmp_path / "multirun").glob("0/main.log")
    assert RESUMED.search(log_file.read_text()), log_file.read_text()[-3000:]
