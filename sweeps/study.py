"""Reading a study: names, dataset identity, trial descriptions, best trial."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ds.datasets import MNIST_SAMPLE, SAMPLE_DIR, DatasetIdentity

DATASET_ATTR = "dataset"
FIXED_PARAMS_ATTR = "fixed_params"
FAIL_REASON_ATTR = "fail_reason"
RETRY_OF_ATTR = "retry_of"
# The hydra.searchpath overrides a trial's config groups were found through (an export's --params-dir).
SEARCHPATH_ATTR = "searchpath"
# Every params.* value a trial trained with, as its task composed and resolved them (the export's source).
TRAINED_PARAMS_ATTR = "trained_params"
# Hyperband's max_resource for every worker and rerun of a study (sweeps/reporter.py).
HYPERBAND_RESOURCE_ATTR = "hyperband_max_resource"
ATTEMPT_ATTR = "attempt"
MAX_ATTEMPTS = 2
# The system attribute where Optuna's enqueue_trial keeps a queued trial's parameters.
OPTUNA_QUEUED_PARAMS_ATTR = "fixed_params"


class StudyError(LookupError):
    """A study that cannot give what was asked of it."""


class StudyNotFoundError(StudyError):
    """No such study, or no completed trial in it."""


class MultiObjectiveStudyError(StudyError):
    """A study with several objectives, so no single best trial."""


class DatasetMismatchError(ValueError):
    """A sweep's data differs from the data its study was run on."""


def default_study_name(identity: DatasetIdentity) -> str:
    return f"linearnet-{identity.name}"


def check_dataset(study: optuna.Study, identity: DatasetIdentity, where: str, *, user: str = "sweep") -> None:
    """Refuse to mix trials trained on different data in one study, or to
    take a study's best parameters to other data (`user="run"`)."""
    recorded = study.user_attrs.get(DATASET_ATTR)
    if recorded is None or recorded.get("sha256") == identity.sha256:
        return
    other_study = "Choose another study (hydra.sweeper.study_name=...) or" if user == "sweep" else "Expected"
    studied = DatasetIdentity(**recorded)
    if studied.name == MNIST_SAMPLE.name:
        how = f"the bundled sample: paths.data={_shown(SAMPLE_DIR)}"
    else:
        how = f"paths.data=<the folder holding the {studied.name} files>"
    raise DatasetMismatchError(
        f"study {study.study_name!r} in {where} was run on {studied}, "
        f"but this {user}'s data is {identity}; results on other data would not compare. "
        f"{other_study} the study's data ({how})."
    )


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def requeue(study: optuna.Study, trial: FrozenTrial, *, use_attempt: bool = True) -> bool:
    """Queue a crashed worker's or an interrupted trial's parameters again.

    Each set of parameters is tried at most MAX_ATTEMPTS times (an interrupt
    by the user, `use_attempt=False`, does not count); returns whether this
    one was queued.
    """
    attempt = trial.user_attrs.get(ATTEMPT_ATTR, 1)
    if use_attempt and attempt >= MAX_ATTEMPTS:
        return False
    attrs = {k: v for k, v in trial.user_attrs.items() if k != FAIL_REASON_ATTR}
    next_attempt = attempt + 1 if use_attempt else attempt
    # A retry stopped before all its parameters were suggested still has them queued.
    params = {**trial.system_attrs.get(OPTUNA_QUEUED_PARAMS_ATTR, {}), **trial.params}
    study.enqueue_trial(params, user_attrs={**attrs, RETRY_OF_ATTR: trial.number, ATTEMPT_ATTR: next_attempt})
    return True


def queued_params(storage: BaseStorage, trial_id: int) -> dict[str, Any]:
    """The parameters `requeue` fixed for a trial (empty for a sampled one)."""
    return storage.get_trial(trial_id).system_attrs.get(OPTUNA_QUEUED_PARAMS_ATTR, {})


def describe_trial(t: FrozenTrial) -> str:
    params = " ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in t.params.items())
    value = f"{t.value:.4f}" if t.value is not None else "-"
    if t.state == TrialState.PRUNED and t.intermediate_values:
        step = max(t.intermediate_values)
        value = f"{t.intermediate_values[step]:.4f} at epoch {step}"
    seconds = f"{t.duration.total_seconds():.1f} s" if t.duration else "-"
    line = f"trial {t.number:3d} {t.state.name:8s} value={value} {params} ({seconds})"
    if t.state == TrialState.FAIL and FAIL_REASON_ATTR in t.user_attrs:
        line += f" reason: {t.user_attrs[FAIL_REASON_ATTR]}"
    return line


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def study_names(storage: BaseStorage) -> list[str]:
    return optuna.study.get_all_study_names(storage)


def load_study(name: str, storage: BaseStorage, where: str) -> optuna.Study:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        present = ", ".join(study_names(storage)) or "none"
        raise StudyNotFoundError(f"no study {name!r} in {where}; studies present: {present}") from None
    check_single_objective(study, where)
    return study


def check_single_objective(study: optuna.Study, where: str) -> None:
    """Refuse a study with several objectives (made by other code in a shared storage)."""
    if len(study.directions) > 1:
        directions = ", ".join(d.name.lower() for d in study.directions)
        raise MultiObjectiveStudyError(
            f"study {study.study_name!r} in {where} has {len(study.directions)} objectives ({directions}), "
            "so it has no single best trial; expected a study of one objective, the test accuracy "
            "(hydra.sweeper.study_name=... or another name)"
        )


def best_trial(study: optuna.Study, storage: BaseStorage, where: str) -> FrozenTrial:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        present = ", ".join(study_names(storage)) or "none"
        raise StudyNotFoundError(
            f"study {study.study_name!r} in {where} has no completed trial yet; "
            f"studies present: {present}"
        )
    return study.best_trial


def best_params(trial: FrozenTrial) -> dict[str, Any]:
    """The values that reproduce `trial`: sampled, and fixed on the sweep's command line."""
    return {**trial.params, **trial.user_attrs.get(FIXED_PARAMS_ATTR, {})}


def describe_states(study: optuna.Study) -> str:
    """Its trials counted by state: "3 COMPLETE, 1 PRUNED", or "no trials"."""
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"
