"""The distribution as a guest in other environments: stable Hydra 1.3 or the 1.4 line, Optuna 4 or 5,
with or without the stock hydra-optuna-sweeper.

The tests marked `compat` also run in each venv of the compatibility matrix (.ci/compat), where
only the distribution, its declared dependencies and pytest are installed; the others compare with
the stock plugin, which only the app's own environment has.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from packaging.requirements import Requirement

import hydra_plugins.pruning_optuna_sweeper as plugin
from hydra_plugins.pruning_optuna_sweeper import samplers
from tests.cli import copy_example, run_example

DISTRIBUTION = "pruning-optuna-sweeper"


def declared() -> dict[str, Requirement]:
    """The installed distribution's requirements outside its extras, by project name."""
    reqs = [Requirement(r) for r in importlib.metadata.requires(DISTRIBUTION) or []]
    return {r.name.lower(): r for r in reqs if r.marker is None}


@pytest.mark.compat
def test_the_built_distribution_needs_no_stock_plugin_and_accepts_stable_hydra_and_optuna_4() -> None:
    required = declared()
    assert "hydra-optuna-sweeper" not in required, required
    assert "omegaconf" not in required  # hydra-core picks its own
    hydra_core, optuna = required["hydra-core"].specifier, required["optuna"].specifier
    for version in ("1.3.2", "1.3.8"):
        assert hydra_core.contains(version), hydra_core
    assert hydra_core.contains("1.4.0rc3", prereleases=True), hydra_core
    for version in ("4.0.0", "5.0.0", "5.1.0"):
        assert optuna.contains(version), optuna
    assert not optuna.contains("3.6.1") and not hydra_core.contains("1.3.1"), (optuna, hydra_core)


@pytest.mark.compat
def test_the_extras_name_what_the_printed_hints_need() -> None:
    extras = {}
    for text in importlib.metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(text)
        for extra in ("dashboard", "report", "serve", "all"):
            if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
                extras.setdefault(extra, set()).add(requirement.name.lower())
    assert extras["dashboard"] == {"optuna-dashboard"}
    assert extras["report"] == {"plotly", "matplotlib"}
    assert extras["serve"] == {"grpcio", "protobuf", "optuna-dashboard"}
    assert extras["all"] == extras["dashboard"] | extras["report"] | extras["serve"]


@pytest.mark.compat
def test_every_plugin_module_loads_the_way_hydra_1_3_scans_plugins() -> None:
    """Hydra 1.3 runs each public module of hydra_plugins/ outside sys.modules; a dataclass with
    postponed (string) annotations fails there (AttributeError from dataclasses)."""
    scanned = [m.name for m in pkgutil.iter_modules(plugin.__path__) if not m.name.startswith("_")]
    assert {"config", "sweeper", "pool_launcher", "samplers"} <= set(scanned)
    for name in scanned:
        spec = importlib.util.find_spec(f"{plugin.__name__}.{name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # not registered in sys.modules, as Hydra 1.3 does


@pytest.mark.compat
@pytest.mark.parametrize("name", [n for n in samplers.SAMPLERS if n not in ("motpe", "gp")])
def test_each_sampler_option_builds_on_the_installed_optuna(name: str) -> None:
    from hydra_plugins.pruning_optuna_sweeper._settings import build

    sampler = build("sampler", OmegaConf.structured(samplers.SAMPLERS[name]))
    if name == "grid":
        sampler = sampler({"x": [1, 2]})
    assert type(sampler).__module__.startswith("optuna.samplers"), sampler


@pytest.mark.compat
def test_a_setting_this_optuna_lacks_is_refused_unless_it_holds_its_default() -> None:
    import optuna

    lacking = {"NSGAIISampler": "mutation", "GPSampler": "warn_independent_sampling"}
    config = {"NSGAIISampler": samplers.NSGAIISamplerConfig, "GPSampler": samplers.GPSamplerConfig}
    missing = [
        (cls, key)
        for cls, key in lacking.items()
        if key not in inspect.signature(getattr(optuna.samplers, cls)).parameters
    ]
    for cls, key in missing:  # Optuna 4.0: neither; Optuna 5: both are there and nothing is dropped
        with pytest.raises(
            ValueError, match=rf"{key}=.*has no such setting; expected it left at its default"
        ):
            samplers.build_sampler(cls, config[cls], **{key: "not the default"})
    default = {f.name: f.default for f in fields(samplers.NSGAIISamplerConfig) if not f.name.startswith("_")}
    assert isinstance(samplers.nsgaii(**default), optuna.samplers.NSGAIISampler)


def test_the_sampler_group_has_the_stock_plugin_s_names_keys_and_defaults() -> None:
    stock = pytest.importorskip("hydra_plugins.hydra_optuna_sweeper.config")
    from hydra.core.config_store import ConfigStore

    stock_names = {
        name.removesuffix(".yaml")
        for name in ConfigStore.instance().list("hydra/sweeper/sampler")
        if ConfigStore.instance().load(f"hydra/sweeper/sampler/{name}").provider == "optuna_sweeper"
    }
    assert stock_names == set(samplers.SAMPLERS)
    for name, ours in samplers.SAMPLERS.items():
        theirs = {
            "tpe": stock.TPESamplerConfig,
            "random": stock.RandomSamplerConfig,
            "cmaes": stock.CmaEsSamplerConfig,
            "nsgaii": stock.NSGAIISamplerConfig,
            "nsgaiii": stock.NSGAIIISamplerConfig,
            "motpe": stock.MOTPESamplerConfig,
            "grid": stock.GridSamplerConfig,
            "gp": stock.GPSamplerConfig,
            "qmc": stock.QMCSamplerConfig,
        }[name]
        mine = OmegaConf.to_container(OmegaConf.structured(ours))
        expected = OmegaConf.to_container(OmegaConf.structured(theirs))
        mine.pop("_target_"), expected.pop("_target_")
        assert mine == expected, name


# lightning-hydra-template's configs/hparams_search/mnist_optuna.yaml in shape, with the one line a
# migration changes (`override /hydra/sweeper: optuna` -> pruning_optuna) and the stock _target_ kept.
STOCK_OVERLAY = """\
# @package _global_
defaults:
  - override /hydra/sweeper: pruning_optuna

hydra:
  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
    storage: sqlite:///{db}
    study_name: descent
    n_jobs: 1
    direction: minimize
    n_trials: 4
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10
    params:
      lr: interval(0.00001, 0.01)
"""


@pytest.mark.compat
def test_a_config_naming_the_stock_class_runs_this_sweeper_when_pruning_optuna_is_selected(
    tmp_path: Path,
) -> None:
    from pruning_optuna_sweeper.compat import hydra_whitelists_targets

    if hydra_whitelists_targets():
        pytest.skip("Hydra 1.4: the config's _target_ line is removed (migration.py); the matrix runs 1.3")
    app = copy_example(tmp_path)
    db = app / "study.db"
    (app / "conf" / "hparams_search").mkdir()
    (app / "conf" / "hparams_search" / "descent_optuna.yaml").write_text(STOCK_OVERLAY.format(db=db))
    result = run_example(app, "descent.py", "-m", "+hparams_search=descent_optuna", "steps=20")

    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stdout.count("hydra.sweeper._target_ names the stock OptunaSweeper") == 1, result.stdout
    assert "Sweep done" in result.stdout
    import optuna

    trials = optuna.load_study(study_name="descent", storage=f"sqlite:///{db}").trials
    assert len(trials) == 4 and all(t.intermediate_values for t in trials)  # reported: our sweeper ran it


@pytest.mark.compat
def test_the_cli_names_itself_as_called_console_script_or_module(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "pruning-optuna-sweeper"
    for command, usage in (
        ([str(script)], "usage: pruning-optuna-sweeper "),
        ([sys.executable, "-m", "pruning_optuna_sweeper"], "usage: python -m pruning_optuna_sweeper "),
    ):
        result = subprocess.run(
            [*command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and result.stdout.startswith(usage), result.stdout[:300] + result.stderr
