"""The rehearsal of a sweep's sampler and pruner on in-memory trials."""

from __future__ import annotations

import importlib.util

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.pruning_optuna_sweeper._rehearsal import RehearsalError, rehearse
from hydra_plugins.pruning_optuna_sweeper._search_space import SearchSpace

SPACE = SearchSpace(
    distributions={
        "params.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "params.batch_size": CategoricalDistribution((32, 64, 128, 256, 512)),
        "params.epoch_count": IntDistribution(1, 10),
    },
    fixed={},
    fixed_overrides=[],
    fixed_training={},
)


@pytest.mark.skipif(importlib.util.find_spec("cmaes") is not None, reason="needs a sampler whose package is missing")
def test_a_sampler_failing_after_its_random_start_is_caught_past_that_start() -> None:
    """CmaEsSampler draws its first trials at random and imports cmaes only after them."""

    def make_sampler() -> optuna.samplers.BaseSampler:
        return optuna.samplers.CmaEsSampler(n_startup_trials=8, seed=0)

    rehearse(make_sampler, optuna.pruners.NopPruner, SPACE)  # four trials: still random, no error
    with pytest.raises(RehearsalError, match="No module named 'cmaes'") as caught:
        rehearse(make_sampler, optuna.pruners.NopPruner, SPACE, sampler_startup_trials=8)
    assert caught.value.setting == "sampler"


def test_a_pruner_failing_in_use_is_named() -> None:
    with pytest.raises(RehearsalError, match="ZeroDivisionError") as caught:
        rehearse(optuna.samplers.RandomSampler, lambda: optuna.pruners.HyperbandPruner(reduction_factor=1), SPACE)
    assert caught.value.setting == "pruner"
