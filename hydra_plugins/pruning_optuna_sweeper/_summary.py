"""What a sweep shows when it ends: counts, best trials, the commands that follow,
and Hydra's optimization_results.yaml (the stock sweeper's keys, plus the trial numbers)."""

from __future__ import annotations

import contextlib
import logging
import shlex
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pruning_optuna_sweeper.extras import needs
from pruning_optuna_sweeper.storage import default_storage, mask_url
from pruning_optuna_sweeper.study import WORKER_ATTR, describe_states, describe_trial, python_command

log = logging.getLogger(__name__)


class BestSoFar:
    """The best trial so far, for each trial's log line: read from the study once, then kept as
    this process's trials end, so that a line costs no query that grows with the study."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.best: FrozenTrial | None = None
        if len(study.directions) == 1:
            with contextlib.suppress(ValueError):  # no completed trial yet
                self.best = study.best_trial

    def add(self, trial: FrozenTrial) -> None:
        if len(self.study.directions) > 1 or trial.state != TrialState.COMPLETE or trial.value is None:
            return
        sign = 1 if self.study.direction == StudyDirection.MAXIMIZE else -1
        if self.best is None or self.best.value is None or sign * (trial.value - self.best.value) > 0:
            self.best = trial

    def __str__(self) -> str:
        if len(self.study.directions) > 1:  # the front is the study's, read again
            return f"{len(self.study.best_trials)} on the Pareto front"
        return "none yet" if self.best is None else f"trial {self.best.number} {self.best.value:.4f}"


def summarise(
    study: optuna.Study,
    *,
    storage: str | None,
    sweep_dir: Path,
    launched: int,
    failed: int,
    seconds: float,
    best_command: str | None,
) -> None:
    """Log the outcome and the commands to watch the study and train with its best
    parameters; save optimization_results.yaml in `sweep_dir`."""
    log.info(
        "Sweep done in %.1f s: launched %d trials (%d failed); the study holds %s.",
        seconds,
        launched,
        failed,
        describe_states(study),
    )
    python, name = python_command(), shlex.quote(study.study_name)
    # The storage where it is not what the commands read by themselves ($SWEEP_STORAGE, else the
    # default): a password stays in the environment, never on a command line.
    where = "" if storage is None or storage == default_storage() else f" {shlex.quote(mask_url(storage))}"
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.warning(
            "trial %d is still RUNNING for %s; should that sweep have died, a later sweep or "
            "`%s -m pruning_optuna_sweeper%s recover %s` marks it FAIL and queues it again "
            "once it has sent no heartbeat "
            "for grace_period seconds.",
            trial.number,
            trial.user_attrs.get(WORKER_ATTR, "another sweep"),
            python,
            f" --storage{where}" if where else "",
            name,
        )
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.warning("No trial completed, so there is no best trial yet.")
        return
    if len(study.directions) == 1:
        best = study.best_trial
        log.info("Best: %s", describe_trial(best))
        results: dict[str, Any] = {
            "name": "optuna",
            "best_params": best.params,
            "best_value": best.value,
            "study_name": study.study_name,
            "best_trial": best.number,
        }
    else:
        front = study.best_trials
        log.info("Pareto front: %d trials", len(front))
        for trial in front:
            log.info("    %s", describe_trial(trial))
        results = {
            "name": "optuna",
            "solutions": [{"params": t.params, "values": t.values} for t in front],
            "study_name": study.study_name,
            "best_trials": [_numbered(t) for t in front],
        }
    if storage is not None:
        # Where an extra is missing, the line says first how to install it with this Python.
        log.info(
            "Watch the study:   %s%s -m pruning_optuna_sweeper.dashboard%s",
            needs("dashboard", python),
            python,
            where,
        )
        log.info(
            "Report (HTML, PNG): %s%s -m pruning_optuna_sweeper report%s %s",
            needs("report", python),
            python,
            f" --storage{where}" if where else "",
            name,
        )
    if best_command:
        log.info("Train with its best parameters:   %s", best_command)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def _numbered(trial: FrozenTrial) -> dict[str, Any]:
    return {"number": trial.number, "params": trial.params, "values": trial.values}
