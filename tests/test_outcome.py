"""What a trial's JobReturn records in a real SQLite study, also when another
worker has finished that trial first (as Optuna's stale-trial check does
when this process's heartbeats stopped)."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from hydra_plugins.pruning_optuna_sweeper._outcome import record_outcome


def job_return(status: JobStatus, value: object) -> JobReturn:
    ret = JobReturn()
    ret.status = status
    ret.return_value = value
    return ret


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def asked(storage: str) -> tuple[optuna.Study, optuna.Trial]:
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize", load_if_exists=True)
    trial = study.ask()
    trial.suggest_float("params.lr", 1e-4, 1e-1, log=True)
    return study, trial


@pytest.mark.parametrize(
    ("ret", "state", "value", "reason"),
    [
        (job_return(JobStatus.COMPLETED, 0.91), TrialState.COMPLETE, 0.91, None),
        (
            job_return(JobStatus.FAILED, optuna.TrialPruned("pruned after epoch 1")),
            TrialState.PRUNED,
            None,
            None,
        ),
        (job_return(JobStatus.FAILED, RuntimeError("boom")), TrialState.FAIL, None, "RuntimeError: boom"),
        (
            job_return(JobStatus.COMPLETED, float("nan")),
            TrialState.FAIL,
            None,
            "the task returned nan, not finite",
        ),
        (
            job_return(JobStatus.COMPLETED, None),
            TrialState.FAIL,
            None,
            "the task returned None, expected a float",
        ),
    ],
)
def test_each_outcome_is_recorded(storage: str, ret: JobReturn, state: TrialState, value, reason) -> None:
    study, trial = asked(storage)

    frozen, recorded = record_outcome(study, trial, ret)

    stored = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert recorded and frozen.state == stored.state == state
    assert stored.value == value
    assert stored.user_attrs.get("fail_reason") == reason


@pytest.mark.parametrize(
    "ret", [job_return(JobStatus.COMPLETED, 0.91), job_return(JobStatus.FAILED, RuntimeError("boom"))]
)
def test_a_trial_another_worker_failed_keeps_that_and_this_result_is_dropped(
    storage: str, ret: JobReturn, caplog
) -> None:
    study, trial = asked(storage)
    other_worker = optuna.load_study(study_name="s", storage=storage)
    other_worker.tell(trial.number, state=TrialState.FAIL)
    caplog.set_level(logging.WARNING, logger="hydra_plugins.pruning_optuna_sweeper._outcome")

    frozen, recorded = record_outcome(study, trial, ret)

    stored = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert not recorded and frozen.state == stored.state == TrialState.FAIL
    assert stored.value is None and "fail_reason" not in stored.user_attrs
    assert f"trial {trial.number} was marked FAIL by another worker; its result is dropped" in caplog.text


def test_a_trial_its_task_marked_pruned_is_recorded_pruned_with_its_last_value(storage: str) -> None:
    from pruning_optuna_sweeper.trial import SweepTrial

    study, trial = asked(storage)
    # The task's side, as a job's process opens it: the same trial through its own study object.
    task_storage = optuna.storages.get_storage(storage)
    trial_id = task_storage.get_trial_id_from_study_id_trial_number(
        task_storage.get_study_id_from_name("s"), trial.number
    )
    task_trial = SweepTrial(optuna.Trial(optuna.load_study(study_name="s", storage=task_storage), trial_id))
    task_trial.report(0.5, 0)
    task_trial.report(0.6, 1)
    task_trial.mark_pruned()

    frozen, recorded = record_outcome(study, trial, job_return(JobStatus.COMPLETED, 0.99))

    stored = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert recorded and frozen.state == stored.state == TrialState.PRUNED
    assert stored.value == 0.6 and stored.user_attrs["pruned_at_step"] == 1
