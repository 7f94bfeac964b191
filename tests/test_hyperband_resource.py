"""Hyperband's maximum resource comes from the sweep, the same in every process."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.pruning_optuna_sweeper.config import HyperbandPrunerConfig, MedianPrunerConfig
from sweeps.reporter import build_pruner, pinned_max_resource

HYPERBAND = OmegaConf.structured(HyperbandPrunerConfig)


def asked(**distributions: BaseDistribution) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize")
    study.ask({"params.lr": FloatDistribution(1e-4, 1e-1, log=True), **distributions})
    [trial] = study.get_trials()
    return trial


@pytest.mark.parametrize(
    ("distributions", "expected"),
    [
        ({"params.epoch_count": IntDistribution(1, 10)}, 10),
        ({"params.epoch_count": CategoricalDistribution([3, 12, 6])}, 12),
        ({}, 4),  # epoch_count not searched: the trial's own, which every trial shares
    ],
)
def test_auto_becomes_the_most_epochs_a_trial_of_the_sweep_can_train(distributions: dict, expected: int) -> None:
    trial = asked(**distributions)
    pinned = pinned_max_resource(HYPERBAND, lambda: trial, epoch_count=4)

    assert pinned.max_resource == expected
    assert HYPERBAND.max_resource == "auto"  # the sweeper's own config is left as it is
    assert isinstance(build_pruner(pinned), optuna.pruners.HyperbandPruner)


def test_a_chosen_max_resource_and_other_pruners_are_left_alone() -> None:
    chosen = OmegaConf.merge(HYPERBAND, {"max_resource": 30})
    median = OmegaConf.structured(MedianPrunerConfig)

    def unread() -> optuna.trial.FrozenTrial:
        raise AssertionError("the trial is read only for max_resource: auto")

    assert pinned_max_resource(chosen, unread, epoch_count=4).max_resource == 30
    assert pinned_max_resource(median, unread, epoch_count=4) == median
