"""The `hydra/sweeper/sampler` group: the stock hydra-optuna-sweeper's options, names, keys and
defaults, shipped here so that the distribution does not depend on the stock plugin (whose stable
release pins optuna<3).

Where the stock plugin is installed too, its options are kept as they are and these fill only
the names it lacks: both describe the same samplers. Keys that an older Optuna's sampler does not
take are left out while they hold their default (`build_sampler`), so that Optuna 4.0 runs the same
configs as Optuna 5.
"""

import importlib
import importlib.util
import inspect
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pruning_optuna_sweeper.compat import store_config

HERE = "hydra_plugins.pruning_optuna_sweeper.samplers."
STOCK_PLUGIN = "hydra_plugins.hydra_optuna_sweeper"


def build_sampler(name: str, defaults: Any, **kwargs: Any) -> Any:
    """optuna.samplers.<name>(**kwargs), without the keys this Optuna's class does not take where
    they hold their default (`defaults`, a config class); another value there is the user's error."""
    import optuna  # here: Hydra imports this module at every start, single runs included

    cls = getattr(optuna.samplers, name)
    accepted = inspect.signature(cls).parameters
    default = {f.name: f.default for f in fields(defaults)}
    for key in [k for k in kwargs if k not in accepted]:
        if kwargs[key] != default.get(key):
            raise ValueError(
                f"{key}={kwargs[key]!r}: optuna {optuna.__version__}'s {name} has no such setting; "
                "expected it left at its default, or a newer optuna"
            )
        del kwargs[key]
    return cls(**kwargs)


def tpe(**kwargs: Any) -> Any:
    """TPESampler without the stock config's None settings: Optuna 5 reads None as "its default",
    Optuna 4.0 takes it literally (prior_weight=None fails at the first categorical)."""
    default = {f.name: f.default for f in fields(TPESamplerConfig)}
    kept = {k: v for k, v in kwargs.items() if not (v is None and default.get(k) is None)}
    return build_sampler("TPESampler", TPESamplerConfig, **kept)


def nsgaii(**kwargs: Any) -> Any:
    return build_sampler("NSGAIISampler", NSGAIISamplerConfig, **kwargs)


def nsgaiii(reference_points: list[list[float]] | None = None, **kwargs: Any) -> Any:
    if reference_points is not None:
        import numpy

        kwargs["reference_points"] = numpy.asarray(reference_points, dtype=float)
    return build_sampler("NSGAIIISampler", NSGAIIISamplerConfig, **kwargs)


def gp(**kwargs: Any) -> Any:
    return build_sampler("GPSampler", GPSamplerConfig, **kwargs)


def raise_motpe_removed(*args: Any, **kwargs: Any) -> NoReturn:
    raise ValueError(
        "The 'motpe' sampler was removed in Optuna 4.0. "
        "Use 'hydra/sweeper/sampler=tpe' instead. "
        "TPESampler now handles multi-objective optimization."
    )


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class GridSamplerConfig(SamplerConfig):
    """optuna.samplers.GridSampler; its search space is the sweep's (hydra.sweeper.params)."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = HERE + "tpe"
    seed: int | None = None

    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    warn_independent_sampling: bool | None = None
    constant_liar: bool = False
    constraints_func: Any | None = None


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None

    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any | None = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Any | None = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Any | None = None


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = HERE + "nsgaii"
    seed: int | None = None

    population_size: int = 50
    mutation_prob: float | None = None
    mutation: Any | None = None
    crossover: Any | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any | None = None


@dataclass
class NSGAIIISamplerConfig(NSGAIISamplerConfig):
    _target_: str = HERE + "nsgaiii"
    reference_points: list[list[float]] | None = None
    dividing_parameter: int = 3


@dataclass
class MOTPESamplerConfig(SamplerConfig):
    _target_: str = HERE + "raise_motpe_removed"


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = HERE + "gp"
    seed: int | None = None

    independent_sampler: Any | None = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Any | None = None
    warn_independent_sampling: bool = True


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None

    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Any | None = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


SAMPLERS = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "nsgaiii": NSGAIIISamplerConfig,
    "motpe": MOTPESamplerConfig,
    "grid": GridSamplerConfig,
    "gp": GPSamplerConfig,
    "qmc": QMCSamplerConfig,
}


def register() -> None:
    """Store the options that the stock plugin, where installed, does not: its own group is
    imported first, so that it is stored once, by its owner, whichever plugin Hydra scans first."""
    if importlib.util.find_spec(STOCK_PLUGIN) is not None:
        importlib.import_module(f"{STOCK_PLUGIN}.config")
    try:
        present = set(ConfigStore.instance().list("hydra/sweeper/sampler"))
    except OSError:  # no such group yet
        present = set()
    for name, node in SAMPLERS.items():
        if f"{name}.yaml" not in present:
            store_config(
                group="hydra/sweeper/sampler", name=name, node=node, provider="pruning_optuna_sweeper"
            )
