"""Hyperband's `max_resource: auto` is pinned once on the study, the same in every process and rerun."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.storages import RDBStorage

from hydra_plugins.pruning_optuna_sweeper.config import HyperbandPrunerConfig, MedianPrunerConfig
from pruning_optuna_sweeper.trial import HYPERBAND_RESOURCE_ATTR, _pinned

HYPERBAND = OmegaConf.structured(HyperbandPrunerConfig)
STUDY = "hyperband"


@pytest.fixture
def storage(tmp_path: Path) -> RDBStorage:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    return storage


def complete(storage: RDBStorage, steps: int) -> None:
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trial = study.ask()
    for step in range(1, steps + 1):
        trial.report(0.5, step)
    study.tell(trial, 0.5)


def recorded(storage: RDBStorage) -> int | None:
    return optuna.load_study(study_name=STUDY, storage=storage).user_attrs.get(HYPERBAND_RESOURCE_ATTR)


def test_auto_stays_auto_until_a_trial_completes_then_is_pinned_for_good(storage: RDBStorage) -> None:
    assert _pinned(HYPERBAND, storage, STUDY).max_resource == "auto" and recorded(storage) is None
    complete(storage, steps=3)
    complete(storage, steps=5)
    assert _pinned(HYPERBAND, storage, STUDY).max_resource == 6  # Optuna's own choice: the last step + 1
    complete(storage, steps=9)  # a later, longer trial (a rerun with a wider range) changes nothing
    assert _pinned(HYPERBAND, storage, STUDY).max_resource == 6 and recorded(storage) == 6
    pruner = optuna.pruners.HyperbandPruner(
        **{k: v for k, v in _pinned(HYPERBAND, storage, STUDY).items() if k != "_target_"}
    )
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)


def test_a_chosen_max_resource_and_other_pruners_are_left_alone(storage: RDBStorage) -> None:
    complete(storage, steps=3)
    assert _pinned(OmegaConf.merge(HYPERBAND, {"max_resource": 20}), storage, STUDY).max_resource == 20
    median = OmegaConf.structured(MedianPrunerConfig)
    assert _pinned(median, storage, STUDY) == median and recorded(storage) is None
