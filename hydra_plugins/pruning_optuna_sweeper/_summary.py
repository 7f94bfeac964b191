"""What a sweep shows when it ends: counts, best trial, and the commands that follow."""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweeps.storage import default_storage, mask_url, url_password
from sweeps.study import FIXED_PARAMS_ATTR, SEARCHPATH_ATTR, describe_states, describe_trial

from ._quoting import shell_override

log = logging.getLogger(__name__)


def best_so_far(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "none yet"
    return f"trial {best.number} {best.value:.4f}"


def summarise(
    study: optuna.Study,
    *,
    storage: str,
    sweep_dir: Path,
    launched: int,
    failed: int,
    seconds: float,
    reused_overrides: list[str],
    is_group: Callable[[str], bool],
) -> None:
    """Log the outcome and the commands to watch the study and train with its
    best parameters; save Hydra's optimization_results.yaml in `sweep_dir`.

    `reused_overrides`, quoted for the shell, go into the training command as
    they are; so do the config group options the best trial ran on
    (`params=tuned`), which best_of needs on its command line, and the search
    path they were found through."""
    log.info(
        "Sweep done in %.1f s: launched %d trials (%d failed); the study holds %s.",
        seconds,
        launched,
        failed,
        describe_states(study),
    )
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        log.warning("No trial completed, so there is no best trial yet.")
        return
    best = study.best_trial
    log.info("Best: %s", describe_trial(best))
    from_env = storage == os.environ.get("SWEEP_STORAGE")
    groups = [shell_override(k, str(v)) for k, v in best.user_attrs.get(FIXED_PARAMS_ATTR, {}).items() if is_group(k)]
    if groups:
        groups += map(shlex.quote, best.user_attrs.get(SEARCHPATH_ATTR, []))
    train = ["python", "main.py", shell_override("best_of", study.study_name), *groups, *reused_overrides]
    if storage != default_storage():
        train.append(shell_override("storage", mask_url(storage)))
    dashboard_url = '"$SWEEP_STORAGE"' if from_env and url_password(storage) else shlex.quote(mask_url(storage))
    log.info("Watch the study:   optuna-dashboard %s", dashboard_url)
    log.info("Train with its best parameters:   %s", " ".join(train))
    results = {
        "name": "optuna",
        "study_name": study.study_name,
        "best_trial": best.number,
        "best_params": best.params,
        "best_value": best.value,
    }
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
