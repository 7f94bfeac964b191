"""Hyperband's maximum resource comes from the study, the same in every process and rerun."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage

from hydra_plugins.pruning_optuna_sweeper.config import HyperbandPrunerConfig, MedianPrunerConfig
from sweeps.reporter import build_pruner, pinned_max_resource
from sweeps.study import HYPERBAND_RESOURCE_ATTR

HYPERBAND = OmegaConf.structured(HyperbandPrunerConfig)
STUDY = "hyperband"


@pytest.fixture
def storage(tmp_path: Path) -> RDBStorage:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    return storage


def pin(storage: RDBStorage, pruner: DictConfig = HYPERBAND, epoch_count: int = 4, **distributions: BaseDistribution) -> DictConfig:
    """The pruner config that the task of a trial newly asked with `distributions` builds."""
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trial = study.ask({"params.lr": FloatDistribution(1e-4, 1e-1, log=True), **distributions})
    study_id = storage.get_study_id_from_name(STUDY)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    return pinned_max_resource(pruner, storage, study_id, trial_id, epoch_count)


def recorded(storage: RDBStorage) -> int | None:
    return optuna.load_study(study_name=STUDY, storage=storage).user_attrs.get(HYPERBAND_RESOURCE_ATTR)


@pytest.mark.parametrize(
    ("distributions", "expected"),
    [
        ({"params.epoch_count": IntDistribution(1, 10)}, 10),
        ({"params.epoch_count": CategoricalDistribution([3, 12, 6])}, 12),
        ({}, 4),  # epoch_count not searched: the trial's own, which every trial of the run shares
    ],
)
def test_auto_becomes_the_most_epochs_a_trial_can_train(storage: RDBStorage, distributions: dict, expected: int) -> None:
    pinned = pin(storage, **distributions)

    assert pinned.max_resource == expected
    assert HYPERBAND.max_resource == "auto"  # the sweeper's own config is left as it is
    assert isinstance(build_pruner(pinned), optuna.pruners.HyperbandPruner)
    assert recorded(storage) == expected


def test_a_rerun_with_a_wider_range_keeps_the_study_s_value(storage: RDBStorage) -> None:
    assert pin(storage, **{"params.epoch_count": IntDistribution(1, 3)}).max_resource == 3

    assert pin(storage, **{"params.epoch_count": IntDistribution(1, 9)}).max_resource == 3
    assert pin(storage, epoch_count=20).max_resource == 3


def test_a_chosen_max_resource_and_other_pruners_are_left_alone(storage: RDBStorage) -> None:
    chosen = OmegaConf.merge(HYPERBAND, {"max_resource": 30})
    median = OmegaConf.structured(MedianPrunerConfig)

    assert pin(storage, chosen, **{"params.epoch_count": IntDistribution(1, 10)}).max_resource == 30
    assert pin(storage, median) == median
    assert recorded(storage) is None
