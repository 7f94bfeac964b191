"""Queuing a trial's parameters again, in a real SQLite study."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweeps.study import MAX_ATTEMPTS, requeue


def failed_trial(study: optuna.Study, attempt: int) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    trial.suggest_float("params.lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("attempt", attempt)
    return study.tell(trial, state=TrialState.FAIL)


def test_a_crash_uses_an_attempt_and_an_interrupt_does_not(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    last = failed_trial(study, attempt=MAX_ATTEMPTS)

    assert not requeue(study, last), "a crash on the last attempt is not retried"
    assert requeue(study, last, use_attempt=False), "an interrupt by the user always is"
    [queued] = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs["attempt"] == MAX_ATTEMPTS and queued.user_attrs["retry_of"] == last.number

    first = failed_trial(study, attempt=1)
    assert requeue(study, first)
    retry = study.get_trials(states=(TrialState.WAITING,))[-1]
    assert retry.user_attrs["attempt"] == 2 and retry.user_attrs["retry_of"] == first.number
    assert queued.system_attrs["fixed_params"] == last.params  # the same parameters, run again


def test_a_retry_stopped_before_its_parameters_were_suggested_keeps_them(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    first = failed_trial(study, attempt=1)
    assert requeue(study, first, use_attempt=False)
    retry = study.ask()  # taken from the queue, then interrupted before any suggest
    stopped = study.tell(retry, state=TrialState.FAIL)

    assert stopped.params == {}
    assert requeue(study, stopped, use_attempt=False)
    [queued] = study.get_trials(states=(TrialState.WAITING,))
    assert queued.system_attrs["fixed_params"] == first.params
