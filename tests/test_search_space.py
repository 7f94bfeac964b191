"""Which values and ranges a sweep takes from its config and command line (in-process;
test_sweep runs the same rules through real sweeps)."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ds.config import Config
from hydra_plugins.hydra_optuna_sweeper._impl import (  # the reference
    OptunaSweeperImpl,
    create_optuna_distribution_from_override,
)
from hydra_plugins.pruning_optuna_sweeper._search_space import (
    SearchSpaceError,
    check_search_space,
    distribution_of,
    grid_choices,
    parse_search_space,
)
from pruning_optuna_sweeper.hooks import SweepHooks
from sweep_hooks import LinearNetHooks

NO_GROUPS = lambda key: []  # noqa: E731


def training_config():
    cfg = OmegaConf.structured(Config)
    cfg.run_name = "a-run"
    return cfg


@pytest.mark.parametrize(
    "override",
    [
        "key=choice(1,2)",
        "key=choice(true, false)",
        "key=choice('hello', 'world')",
        "key=range(1,3)",
        "key=range(1,10,3)",
        "key=range(0.5, 5.5, step=1)",
        "key=range(0.1, 1.0, 0.2)",
        "key=interval(1, 5)",
        "key=interval(0.5, 1.5)",
        "key=int(interval(1, 5))",
        "key=tag(log, interval(1, 5))",
        "key=tag(log, interval(1e-4, 1e-1))",
        "key=tag(log, int(interval(1, 5)))",
    ],
)
def test_the_search_space_syntax_reads_as_the_stock_sweeper_reads_it(override: str) -> None:
    [parsed] = OverridesParser.create().parse_overrides([override])
    assert distribution_of(parsed) == create_optuna_distribution_from_override(parsed)


def test_a_declared_range_set_to_null_is_dropped_and_the_command_line_s_last_override_wins() -> None:
    declared = {
        "params.lr": None,
        "params.epoch_count": "int(interval(1, 3))",
        "params.batch_size": "choice(32, 64)",
    }
    arguments = [
        "params.batch_size=choice(128, 256)",
        "params.batch_size=64",
        "params.epoch_count=2",
        "params.epoch_count=range(2, 4)",
    ]
    space = parse_search_space(declared, arguments)
    assert "params.lr" not in space.distributions and "params.lr" not in space.fixed
    assert space.fixed == {"params.batch_size": "64"}
    assert space.distributions == {"params.epoch_count": IntDistribution(2, 3)}


@pytest.mark.parametrize(
    ("argument", "hooks", "message"),
    [
        (
            "params.batch_size=choice(32)",
            SweepHooks(),
            "'params.batch_size' holds a single value, choice(32); expected two",
        ),
        (
            "params.batch_size=choice(64, 64)",
            SweepHooks(),
            "'params.batch_size' holds a single value, choice(64, 64)",
        ),
        (
            "params.lrr=interval(0.1, 0.2)",
            SweepHooks(),
            "'params.lrr' (in hydra.sweeper.params or on the command line), which is not a key",
        ),
        (
            "params.lr=interval(-1, 1)",
            LinearNetHooks(),
            "'params.lr' can reach -1.0, which the task's config rejects",
        ),
        (
            "paths.data=choice(data/sample, data/raw)",
            LinearNetHooks(),
            "a range for 'paths.data', which selects the data",
        ),
        (
            "threads=choice(1, 2)",
            LinearNetHooks(),
            "a range for 'threads', which says where and how a trial runs",
        ),
    ],
)
def test_a_range_that_cannot_be_searched_is_refused(argument: str, hooks: SweepHooks, message: str) -> None:
    with pytest.raises(SearchSpaceError) as refused:
        check_search_space(parse_search_space({}, [argument]), training_config(), NO_GROUPS, hooks)
    assert message in str(refused.value)


def test_an_added_key_and_a_group_choice_are_left_to_hydra() -> None:
    space = parse_search_space({}, ["+extra=choice(1, 2)", "params=choice(default, other)"])
    check_search_space(
        space, training_config(), lambda key: ["default", "other"] if key == "params" else [], SweepHooks()
    )
    with pytest.raises(SearchSpaceError, match="'\\+extra', an override that adds or forces a key"):
        check_search_space(
            space,
            training_config(),
            lambda key: ["default", "other"] if key == "params" else [],
            LinearNetHooks(),
        )


@pytest.mark.parametrize(
    "distribution",
    [
        FloatDistribution(0.1, 1.9, step=0.3),
        FloatDistribution(0.0, 1.0, step=0.1),
        IntDistribution(1, 9, step=2),
        CategoricalDistribution(["adam", "sgd"]),
    ],
)
def test_a_grid_holds_the_points_the_stock_sweeper_s_grid_holds(distribution) -> None:
    assert grid_choices("x", distribution) == list(OptunaSweeperImpl._to_grid_sampler_choices(distribution))
