"""Train once more with a study's best parameters: `apply_best(cfg, study_name, storage_url)` in a task;
or take the best trial's stored model as it is: `fetch_best(study_name, storage_url, path)`.

Any Hydra app can call it at the top of its task: the best trial's sampled
and fixed values are set in `cfg`, except the keys the command line gives
(the command line wins); config group choices the best trial ran with
(`model=mlp`) must be on the command line, since Hydra composes groups
before the task runs. What was applied is logged and saved beside Hydra's
config as `.hydra/best_of.yaml`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.storages import BaseStorage

from pruning_optuna_sweeper.artifacts import MODEL_ARTIFACT_ATTR, fetch_artifact
from pruning_optuna_sweeper.storage import mask_url, open_storage
from pruning_optuna_sweeper.study import (
    FIXED_PARAMS_ATTR,
    best_trials,
    check_identity,
    load_study,
    trained_values,
)

log = logging.getLogger(__name__)
_ABSENT = object()


class BestOfError(ValueError):
    """The best trial's settings cannot be applied to this run."""


def load_best(
    study_name: str, storage_url: str | None, identity: dict[str, Any] | None = None
) -> tuple[optuna.Study, BaseStorage, optuna.trial.FrozenTrial]:
    """The study (`latest`: the one whose last completed trial ended most recently), its storage and its
    best trial; a study of several objectives, or one recorded with another `identity` than this
    run's, is refused."""
    where = mask_url(storage_url)
    storage = open_storage(storage_url, must_exist=True)
    study = load_study(study_name, storage, where)
    if len(study.directions) > 1:
        raise BestOfError(
            f"study {study_name!r} in {where} has {len(study.directions)} objectives, "
            "so no single best trial; "
            "expected a study of one objective (python -m pruning_optuna_sweeper show lists its Pareto front)"
        )
    try:
        [trial] = best_trials(study, storage, where)
    except (IndexError, TypeError, ValueError) as error:  # a stored choice index out of its choices, say
        raise BestOfError(
            f"study {study.study_name!r} in {where}: its best trial's record cannot be read "
            f"({type(error).__name__}: {error}); expected a study as the sweeper recorded it"
        ) from None
    check_identity(study, identity, where, user="run")
    return study, storage, trial


def best_choices(study_name: str, storage_url: str | None, groups: dict[str, list[str]]) -> dict[str, str]:
    """{group: option} the best trial ran with, for the config `groups` ({group: its options}) it
    recorded: what the command line must choose, since Hydra composes groups before the task runs
    (an app passes them on before Hydra starts, as this repository's main.py does). An option that
    is not among the group's is refused."""
    study, _, trial = load_best(study_name, storage_url)
    recorded = trained_values(trial)
    chosen = {}
    for group, options in groups.items():
        if group not in recorded:
            continue
        value = recorded[group]
        if not isinstance(value, str) or value not in options:
            raise BestOfError(
                f"best_of={study.study_name}: trial {trial.number} ran with {group}={str(value)[:60]!r}, "
                f"not an option of config group {group!r}; expected one of {', '.join(options)}"
            )
        chosen[group] = value
    return chosen


def fetch_best(
    study_name: str,
    storage_url: str | None,
    path: str | Path,
    identity: dict[str, Any] | None = None,
    attr: str = MODEL_ARTIFACT_ATTR,
) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """best_of without training again: the best trial's stored file (the artifact whose id it records
    under user attr `attr`) copied to `path`, a new file, for the app to use as the trial left it.

    ArtifactError (a StudyError) when the trial has no such artifact or its store is gone."""
    study, storage, trial = load_best(study_name, storage_url, identity)
    study_name = study.study_name  # best_of=latest names one
    fetch_artifact(study, storage, trial, storage_url, path, attr)
    where = mask_url(storage_url)
    log.info(
        "best_of=%s: trial %d of %s (value %.4f): its %s copied to %s",
        study_name,
        trial.number,
        where,
        trial.value,
        attr,
        path,
    )
    return study, trial


def apply_best(
    cfg: DictConfig, study_name: str, storage_url: str | None, identity: dict[str, Any] | None = None
) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """Set the best trial's values in `cfg`; the study and trial they came from.

    With `identity` (what the app's SweepHooks.study_identity gives for this
    run), a study recorded with another identity is refused."""
    study, _, trial = load_best(study_name, storage_url, identity)
    study_name = study.study_name  # best_of=latest names one
    where = mask_url(storage_url)
    hydra = HydraConfig.get()
    given = {
        o.key_or_group.lstrip("+~")
        for o in OverridesParser.create().parse_overrides(list(hydra.overrides.task))
    }
    recorded = trained_values(trial)
    # The command line wins: `params=other` covers every params.* value, unless it is the
    # choice the best trial ran with (`params=tuned`), which best_of needs there.
    choices = hydra.runtime.choices
    covering = {g for g in given if not (g in choices and recorded.get(g) == choices[g])}
    applied = {
        k: v for k, v in recorded.items() if not any(k == g or k.startswith(f"{g}.") for g in covering)
    }
    # What only the task's record gives, where this run's config differs: said, not silently replaced.
    swept = {k.lstrip("+") for k in {**trial.params, **trial.user_attrs.get(FIXED_PARAMS_ATTR, {})}}
    edited = {
        k: current
        for k, v in applied.items()
        if k not in swept
        and k not in choices
        and (current := OmegaConf.select(cfg, k, default=_ABSENT)) not in (_ABSENT, v)
    }
    if edited:
        log.info(
            "best_of=%s: as trial %d trained, where this run's config has other values: %s",
            study_name,
            trial.number,
            ", ".join(f"{k}={applied[k]!r} (not {v!r})" for k, v in edited.items()),
        )
    for key, value in applied.items():
        if key in choices:  # a config group, composed before the task could choose it
            if choices[key] != value:
                raise BestOfError(
                    f"best_of={study_name}: trial {trial.number} ran with {key}={value}, this run has "
                    f"{key}={choices[key]}; expected {key}={value} on this command line"
                )
        elif OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise BestOfError(
                f"best_of={study_name}: trial {trial.number} of study {study_name!r} in {where} "
                f"has {key}, not a key of this run's config; expected a study of this app's sweeps "
                "(python -m pruning_optuna_sweeper list)"
            )
        else:
            OmegaConf.update(cfg, key, value)
    # Said where the command line changed what the trial had, not where it repeats it.
    kept = sorted(
        k for k in set(recorded) - set(applied) if OmegaConf.select(cfg, k, default=_ABSENT) != recorded[k]
    )
    log.info(
        "best_of=%s: trial %d of %s (value %.4f) gives %s%s",
        study_name,
        trial.number,
        where,
        trial.value,
        applied,
        f"; kept from the command line: {kept}" if kept else "",
    )
    source = {
        "study": study_name,
        "storage": where,
        "trial": trial.number,
        "value": trial.value,
        "applied": applied,
    }
    if hydra.output_subdir is not None:
        directory = Path(hydra.runtime.output_dir) / hydra.output_subdir
        directory.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(
            OmegaConf.create({**source, "kept_from_command_line": kept}), directory / "best_of.yaml"
        )
    return study, trial
