"""The rehearsal of a sweep's sampler and pruner on in-memory trials."""

from __future__ import annotations

import importlib.util

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.pruning_optuna_sweeper._settings import SweepSettingsError, rehearse

SPACE = {
    "params.lr": FloatDistribution(1e-4, 1e-1, log=True),
    "params.batch_size": CategoricalDistribution((32, 64, 128, 256, 512)),
    "params.epoch_count": IntDistribution(1, 10),
}


@pytest.mark.skipif(
    importlib.util.find_spec("cmaes") is not None, reason="needs a sampler whose package is missing"
)
def test_a_sampler_failing_after_its_random_start_is_caught_past_that_start() -> None:
    """CmaEsSampler draws its first trials at random and imports cmaes only after them."""

    def make_sampler() -> optuna.samplers.BaseSampler:
        return optuna.samplers.CmaEsSampler(n_startup_trials=8, seed=0)

    rehearse(make_sampler, optuna.pruners.NopPruner(), SPACE, 1, 0)  # four trials: still random, no error
    with pytest.raises(
        SweepSettingsError, match=r"hydra\.sweeper\.sampler fails in use.*No module named 'cmaes'"
    ):
        rehearse(make_sampler, optuna.pruners.NopPruner(), SPACE, 1, sampler_startup_trials=8)


def test_a_pruner_failing_in_use_is_named() -> None:
    with pytest.raises(SweepSettingsError, match=r"hydra\.sweeper\.pruner fails in use.*ZeroDivisionError"):
        rehearse(
            optuna.samplers.RandomSampler, optuna.pruners.HyperbandPruner(reduction_factor=1), SPACE, 1, 0
        )


def test_a_multi_objective_sampler_is_rehearsed_without_steps() -> None:
    rehearse(optuna.samplers.NSGAIISampler, optuna.pruners.MedianPruner(), SPACE, 2, 0)
