"""A trial's config from the reused composition equals Hydra's own composition."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import setup_globals
from hydra.types import RunMode
from omegaconf import OmegaConf

from ds.config import register_configs
from hydra_plugins.pruning_optuna_sweeper import sweeper as _registers_sweeper_configs  # noqa: F401
from hydra_plugins.pruning_optuna_sweeper._config_reuse import ReusingConfigLoader, copy_config
from pruning_optuna_sweeper.trial import TRIAL_ENV, read_trial_env, trial_env_value

CONF = Path(__file__).resolve().parents[1] / "conf"


def trial(n: int, lr: float, batch_size: int) -> list[str]:
    """A trial's overrides as the sweeper writes them."""
    return [
        f"params.lr={lr}",
        f"params.batch_size={batch_size}",
        f"++hydra.job.env_set.{TRIAL_ENV}={trial_env_value('linearnet-mnist', n)}",
    ]


def as_data(config) -> dict:
    data = OmegaConf.to_container(config, resolve=False)
    data["hydra"]["runtime"].pop("output_dir", None)
    return data


def test_reused_composition_equals_hydras_for_plain_values() -> None:
    setup_globals()  # Hydra's resolvers, such as ${now:}
    register_configs()
    GlobalHydra.instance().clear()
    hydra_loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = hydra_loader.load_configuration("config", ["hydra/sweeper=optuna", "seed=3"], RunMode.MULTIRUN)
    reusing = ReusingConfigLoader(hydra_loader)

    first = reusing.load_sweep_config(master, trial(0, 0.01, 64))
    second = reusing.load_sweep_config(master, trial(1, 0.002, 256))
    expected = hydra_loader.load_sweep_config(master, trial(1, 0.002, 256))

    assert reusing._base is not None, "the second trial must take the reuse path"
    assert as_data(second) == as_data(expected)
    assert second.params.lr == 0.002 and second.params.batch_size == 256
    assert (
        first.params.lr == 0.01 and read_trial_env(first.hydra.job.env_set[TRIAL_ENV])["number"] == 0
    )  # copies, not shared
    assert list(second.hydra.overrides.task) == trial(1, 0.002, 256)[:2]


def test_a_trial_with_the_same_group_choice_reuses_it_and_another_choice_is_composed() -> None:
    register_configs()
    GlobalHydra.instance().clear()
    hydra_loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = hydra_loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
    reusing = ReusingConfigLoader(hydra_loader)

    reusing.load_sweep_config(master, ["params=default", *trial(0, 0.01, 64)])
    same_group = reusing.load_sweep_config(master, ["params=default", *trial(1, 0.002, 256)])
    expected = hydra_loader.load_sweep_config(master, ["params=default", *trial(1, 0.002, 256)])
    assert reusing._base is not None, "the same group choice must take the reuse path"
    assert as_data(same_group) == as_data(expected)
    base = reusing._base

    verbose = reusing.load_sweep_config(
        master, ["params=default", "hydra.verbose=true", *trial(2, 0.002, 256)]
    )
    assert reusing._base is not base, "other non-value overrides must be composed by Hydra"
    assert verbose.hydra.verbose is True


def test_a_worker_process_reuses_one_composition_across_the_jobs_it_is_sent() -> None:
    """joblib pickles the loader with every job: each unpickled copy in a
    worker must be that worker's one loader of the sweep, or every trial there
    would be composed from scratch."""
    register_configs()
    GlobalHydra.instance().clear()
    hydra_loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = hydra_loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
    sweep = ReusingConfigLoader(hydra_loader)

    first_job, second_job = (pickle.loads(pickle.dumps(sweep)) for _ in range(2))
    first_job.load_sweep_config(master, trial(0, 0.01, 64))
    assert second_job is first_job and second_job._base is not None, (
        "the second job must find the first's composition"
    )
    reused = second_job.load_sweep_config(master, trial(1, 0.002, 256))
    assert as_data(reused) == as_data(hydra_loader.load_sweep_config(master, trial(1, 0.002, 256)))

    other_sweep = pickle.loads(pickle.dumps(ReusingConfigLoader(hydra_loader)))
    assert other_sweep is not first_job and other_sweep._base is None, "another sweep composes its own"


def test_a_config_that_does_not_pickle_is_copied_the_slow_way() -> None:
    @dataclass
    class DefinedInAFunction:
        lr: float = 0.1

    config = OmegaConf.structured(DefinedInAFunction)
    copied = copy_config(config)
    assert copied == config and copied is not config
    assert OmegaConf.get_type(copied) is DefinedInAFunction
