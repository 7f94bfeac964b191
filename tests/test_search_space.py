"""Which values and ranges a sweep takes from its config and command line (in-process;
test_sweep runs the same rules through real sweeps)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from optuna.distributions import IntDistribution

from ds.config import Config
from hydra_plugins.pruning_optuna_sweeper._search_space import SearchSpaceError, parse_search_space

NO_GROUPS = lambda key: []  # noqa: E731


def training_config():
    cfg = OmegaConf.structured(Config)
    cfg.run_name = "a-run"
    return cfg


def test_a_declared_range_set_to_null_is_dropped_and_the_command_line_s_last_override_wins() -> None:
    declared = {"params.lr": None, "params.epoch_count": "int(interval(1, 3))", "params.batch_size": "choice(32, 64)"}
    arguments = ["params.batch_size=choice(128, 256)", "params.batch_size=64", "params.epoch_count=2", "params.epoch_count=range(2, 4)"]

    space = parse_search_space(declared, arguments, training_config(), NO_GROUPS)

    assert "params.lr" not in space.distributions and "params.lr" not in space.fixed
    assert space.fixed == {"params.batch_size": "64"}
    assert space.distributions == {"params.epoch_count": IntDistribution(2, 3)}


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("params.batch_size=choice(32)", "'params.batch_size' holds a single value, choice(32); expected two or more"),
        ("params.batch_size=choice(64, 64)", "'params.batch_size' holds a single value, choice(64, 64)"),
        ("params.batch_size=choice(1, true)", "'params.batch_size' True does not fit the training config"),  # True is not 1 here
        ("paths.data=choice(data/sample, data/raw)", "a range for 'paths.data', which selects the data (a study holds trials of one dataset)"),
        ("data.download=choice(true, false)", "a range for 'data.download', which selects the data"),
        ("threads=choice(1, 2)", "a range for 'threads', which says where and how the sweep runs"),
        ("progress=choice(true, false)", "a range for 'progress', which says where and how the sweep runs"),
    ],
)
def test_a_range_that_cannot_be_searched_is_refused(argument: str, message: str) -> None:
    with pytest.raises(SearchSpaceError) as refused:
        parse_search_space({}, [argument], training_config(), NO_GROUPS)
    assert message in str(refused.value)
