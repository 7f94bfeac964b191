"""The sweeper in an app that has never heard of this project.

examples/descent (gradient descent on the Rosenbrock function) is copied out
of the repository and swept through the installed distribution (`pip install
.`), side by side with the stock hydra-optuna-sweeper on the stock plugin's
own scenarios: the same trials, the same results, plus pruning. The tests marked `compat` need
no stock plugin and run in every venv of the compatibility matrix too (.ci/compat).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.pruning_optuna_sweeper.config import PruningOptunaSweeperConf
from tests.cli import ROOT, copy_example, run_example

SEEDED = ["hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=123"]
RANGES = ["lr=tag(log, interval(1e-5, 1e-2))", "momentum=choice(0.0, 0.5, 0.9)", "steps=40"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("app"))


def sweep(app: Path, sweeper: str, name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = app / "sweeps" / name / sweeper
    result = run_example(app, "descent.py", "-m", f"hydra/sweeper={sweeper}", f"hydra.sweep.dir={out}", *args)
    return result, out


def trials(storage: str) -> list[tuple]:
    [name] = optuna.get_all_study_names(storage)
    return [
        (t.number, t.state, t.params, t.values)
        for t in optuna.load_study(study_name=name, storage=storage).trials
    ]


@pytest.mark.compat
@pytest.mark.slow
def test_the_installed_distribution_serves_an_app_outside_this_repository(app: Path) -> None:
    where = run_example(
        app,
        "-c",
        "import pruning_optuna_sweeper as s, hydra_plugins.pruning_optuna_sweeper as p; "
        "print(s.__file__, p.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for path in map(Path, where.stdout.split()):
        assert "site-packages" in path.parts and not path.is_relative_to(ROOT / "pruning_optuna_sweeper"), (
            path
        )
    # Neither package imports this app: not ds, main or conf.
    for package in where.stdout.split():
        for module in Path(package).parent.glob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not [n for n in names if n.split(".")[0] in ("ds", "main", "conf", "sweep_hooks")], (
                    module
                )


@pytest.mark.compat
@pytest.mark.slow
def test_without_a_sweep_the_task_s_trial_calls_do_nothing(app: Path) -> None:
    single = run_example(app, "descent.py", "steps=20", "lr=0.0001")
    assert single.returncode == 0, single.stderr[-3000:]


def test_its_schema_has_every_stock_key_with_the_stock_default() -> None:
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf

    stock = OmegaConf.to_container(OmegaConf.structured(OptunaSweeperConf))
    ours = OmegaConf.to_container(OmegaConf.structured(PruningOptunaSweeperConf))
    for key, value in stock.items():
        if key in ("_target_", "defaults", "direction"):
            continue
        assert ours[key] == value, key
    assert ours["direction"] == stock["direction"].name == "minimize"  # the stock schema's is an enum
    assert stock["defaults"][0] in ours["defaults"]  # the same sampler group, the same default


SCENARIOS = {
    "fixed and ranged values": [*SEEDED, *RANGES, "x=-1.2"],
    "grid sampler": [
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_trials=10",
        "lr=choice(1e-4, 1e-3)",
        "momentum=range(0.5, 1.0, 0.2)",
        "steps=30",
    ],
    "NSGA-II, two objectives": [
        "hydra/sweeper/sampler=nsgaii",
        "hydra.sweeper.direction=[minimize,minimize]",
        "objectives=2",
        "hydra.sweeper.sampler.seed=123",
        "lr=tag(log, interval(1e-5, 1e-2))",
        "steps=range(10, 100, 10)",
    ],
    "custom search space": [
        *SEEDED,
        "hydra.sweeper.custom_search_space=search_space.momentum_below_lr_bound",
        "lr=tag(log, interval(1e-5, 1e-2))",
        "steps=30",
    ],
    "stock defaults, seeded": ["hydra.sweeper.sampler.seed=0", "lr=interval(1e-5, 1e-3)", "steps=20"],
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_results_equal_the_stock_sweeper_s(app: Path, scenario: str) -> None:
    args = SCENARIOS[scenario]
    name = re.sub(r"\W+", "-", scenario)
    stock, stock_out = sweep(app, "optuna", name, *args)
    ours, our_out = sweep(app, "pruning_optuna", name, *args, "hydra/sweeper/pruner=none")

    assert stock.returncode == 0, stock.stderr[-3000:]
    assert ours.returncode == 0, ours.stderr[-3000:]
    expected = OmegaConf.to_container(OmegaConf.load(stock_out / "optimization_results.yaml"))
    got = OmegaConf.to_container(OmegaConf.load(our_out / "optimization_results.yaml"))
    assert {k: got[k] for k in expected} == expected
    if "objectives=2" in args:
        assert [t["values"] for t in got["best_trials"]] == [s["values"] for s in expected["solutions"]]
    else:
        assert isinstance(got["best_trial"], int)


@pytest.mark.slow
def test_the_same_trials_are_recorded_in_a_sqlite_study(app: Path) -> None:
    studies = {s: f"sqlite:///{app / f'{s}.db'}" for s in ("optuna", "pruning_optuna")}
    for sweeper, url in studies.items():
        ours = ["hydra/sweeper/pruner=none"] if sweeper == "pruning_optuna" else []
        result, _ = sweep(app, sweeper, "sqlite", *SEEDED, *RANGES, f"hydra.sweeper.storage={url}", *ours)
        assert result.returncode == 0, result.stderr[-3000:]
    assert trials(studies["pruning_optuna"]) == trials(studies["optuna"])


@pytest.mark.slow
def test_too_many_failures_stop_the_sweep_with_the_task_s_error(app: Path) -> None:
    failing = [*SEEDED, "error=true"]
    stock, _ = sweep(app, "optuna", "fail", *failing, "hydra.sweeper.max_failure_rate=0.5")
    ours, _ = sweep(app, "pruning_optuna", "fail", *failing, "hydra.sweeper.max_failure_rate=0.5")
    tolerant, _out = sweep(app, "pruning_optuna", "all-fail", *failing, "hydra.sweeper.max_failure_rate=1.0")

    assert stock.returncode != 0 and "RuntimeError: cfg.error is true" in stock.stderr
    assert ours.returncode != 0 and "Traceback" not in ours.stderr
    assert (
        "error: 11 of 11 trials failed, more than max_failure_rate=0.5 of n_trials=20 allows (10); "
        in ours.stderr
    )
    assert "last reason: RuntimeError: cfg.error is true" in ours.stderr
    assert tolerant.returncode == 0, tolerant.stderr[-3000:]
    assert "the study holds 20 FAIL" in tolerant.stdout and "No trial completed" in tolerant.stdout


@pytest.mark.compat
@pytest.mark.slow
def test_an_in_memory_study_with_the_basic_launcher_prunes_in_process(app: Path) -> None:
    result, _ = sweep(
        app,
        "pruning_optuna",
        "memory",
        *SEEDED,
        "hydra.sweeper.pruner.n_startup_trials=3",
        "lr=tag(log, interval(1e-7, 1e-3))",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "in in-memory storage" in result.stdout
    # The stock defaults (basic launcher, job_output=console): no per-job launcher lines.
    console = result.stdout + result.stderr
    assert "Launching" not in console and "PRUNING_OPTUNA_TRIAL" not in console, console[-3000:]
    assert re.search(r"trial +\d+ PRUNED +value=[0-9.]+ at step \d+", result.stdout), result.stdout[-3000:]


@pytest.mark.slow
def test_pruning_through_the_joblib_launcher_reaches_the_trials_in_their_workers(app: Path) -> None:
    url = f"sqlite:///{app / 'joblib.db'}"
    result, _ = sweep(
        app,
        "pruning_optuna",
        "joblib",
        "hydra/launcher=joblib",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=12",
        "hydra.sweeper.sampler.seed=1",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.study_name=descent",
        "hydra.sweeper.pruner.n_startup_trials=3",
        "lr=tag(log, interval(1e-7, 1e-3))",
        "steps=40",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="descent", storage=url)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned and all(t.intermediate_values for t in pruned)
    assert all(len(t.intermediate_values) < 40 for t in pruned)  # stopped before the last of 40 steps
    assert {t.user_attrs["worker"] for t in study.trials} == {
        study.trials[0].user_attrs["worker"]
    }  # asked by one sweep


@pytest.mark.compat
def test_pruning_on_sqlite_through_the_pool_launcher(app: Path) -> None:
    url = f"sqlite:///{app / 'pool.db'}"
    result, _ = sweep(
        app,
        "pruning_optuna",
        "pool",
        "hydra/launcher=pool",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.sampler.seed=1",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.study_name=descent",
        "hydra.sweeper.pruner.n_startup_trials=3",
        "lr=tag(log, interval(1e-7, 1e-3))",
        "steps=15",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    study = optuna.load_study(study_name="descent", storage=url)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(study.trials) == 8 and pruned, [t.state for t in study.trials]
    # Each pruned trial reported from its worker (at most every step: one may be pruned at the last).
    assert all(0 < len(t.intermediate_values) <= 15 for t in pruned)
