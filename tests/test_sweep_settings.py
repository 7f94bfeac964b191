"""hydra.sweeper settings out of range, named before any trial. The sweep's
command line reaches this check: test_sweep's bad-settings test runs one
such setting (storage=null) through a real sweep."""

from __future__ import annotations

import re
from typing import Any

import pytest
from omegaconf import OmegaConf

from hydra_plugins.pruning_optuna_sweeper._settings import (
    SweepSettingsError,
    build,
    check_settings,
    directions,
)
from hydra_plugins.pruning_optuna_sweeper.config import PruningOptunaSweeperConf


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_failure_rate", 2.0, "max_failure_rate=2.0: expected a share from 0.0 to 1.0"),
        ("grace_period", 5, "grace_period=5: expected more seconds than heartbeat_interval=10"),
        ("n_jobs", 0, "n_jobs=0: expected an integer >= 1"),
        ("n_trials", 0, "n_trials=0: expected an integer >= 1"),
        ("mode", "eager", "mode='eager': expected auto, batch or async"),
        ("n_jobs", "many", "n_jobs='many': expected an integer >= 1, or auto"),
        ("total_trials", 0, "total_trials=0: expected an integer >= 1"),
        ("heartbeat_interval", 0, "heartbeat_interval=0: expected whole seconds >= 1"),
    ],
)
def test_a_setting_out_of_range_is_named(key: str, value: Any, message: str) -> None:
    settings = OmegaConf.structured(PruningOptunaSweeperConf)
    settings.storage = "sqlite:///studies/optuna.db"  # for total_trials
    check_settings(settings)  # the defaults pass
    settings[key] = value

    with pytest.raises(SweepSettingsError, match=re.escape(message)):
        check_settings(settings)


@pytest.mark.parametrize(
    ("sampler", "message"),
    [
        (
            {"_target_": "ds.model.LinearNet"},
            "hydra.sweeper.sampler cannot be used: "
            "_target_ ds.model.LinearNet is not a class a sweep may build "
            "(Hydra's execution whitelist); expected one of Optuna's own samplers (optuna.samplers.*)",
        ),
        (
            {"_target_": "optuna.samplers.NoSuch"},
            "hydra.sweeper.sampler cannot be used: Error loading 'optuna.samplers.NoSuch': "
            "ModuleNotFoundError(\"No module named 'optuna.samplers.NoSuch'\")",
        ),
        (
            {"_target_": "optuna.samplers.TPESampler", "seed": "${oc.env:NO_SUCH_SEED_VARIABLE}"},
            "hydra.sweeper.sampler cannot be used: KeyError raised while resolving interpolation: "
            "\"Environment variable 'NO_SUCH_SEED_VARIABLE' not found\"; expected",
        ),
    ],
)
def test_a_sampler_that_cannot_be_built_is_named_with_the_reason(sampler: dict, message: str) -> None:
    config = OmegaConf.create({"sampler": sampler}).sampler

    with pytest.raises(SweepSettingsError) as refused:
        build("sampler", config)
    assert message in str(refused.value)
    assert "full_key" not in str(refused.value) and "object_type" not in str(refused.value)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("maximize", ["maximize"]),
        ("MINIMIZE", ["minimize"]),
        (["minimize", "maximize"], ["minimize", "maximize"]),
    ],
)
def test_direction_is_a_string_or_a_list(direction: Any, expected: list[str]) -> None:
    assert directions(OmegaConf.create({"d": direction}).d) == expected


def test_a_direction_out_of_range_is_named() -> None:
    with pytest.raises(SweepSettingsError, match=re.escape("direction='up': expected minimize or maximize")):
        directions("up")
