"""`python main.py -m hydra/sweeper=optuna`: real sweeps into real SQLite studies."""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from pruning_optuna_sweeper.study import trained_values
from pruning_optuna_sweeper.trial import HYPERBAND_RESOURCE_ATTR
from tests.cli import MAIN, SHARED_MNIST, epoch_lines, main_env, offline_args, run_main
from tests.events import hparams, load_events, scalar_curve
from tests.sweep_helpers import (
    SHORT_EPOCHS,
    best_of_hint,
    load,
    retry_of,
    run_sweep,
    sqlite_url,
    states,
    sweep_args,
    trial_log,
    trial_run_dir,
    wait_for,
)

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

FIXED_GOOD = ["params.lr=0.003", "params.batch_size=64", "params.epoch_count=3"]


def test_the_default_sweep_records_every_trial_and_the_best_and_prints_a_line_for_each(
    tmp_path: Path,
) -> None:
    """The default sweep as it is (20 trials, n_jobs auto), on the bundled sample."""
    result = run_sweep(tmp_path, n_trials=20, parallel=True)

    assert result.returncode == 0, result.stderr
    study = load(tmp_path)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(20))
    assert set(states(study)) <= {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials:
        assert set(t.params) == {"params.lr", "params.batch_size", "params.epoch_count"}
        assert 1e-4 <= t.params["params.lr"] <= 1e-1
        assert t.params["params.batch_size"] in (32, 64, 128, 256, 512)
        # Test accuracy reported after every epoch it trained; a complete trial's last is its value.
        epochs = t.params["params.epoch_count"]
        trained = len(t.intermediate_values)
        assert sorted(t.intermediate_values) == list(range(1, trained + 1))
        assert trained == epochs if t.state == TrialState.COMPLETE else trained < epochs
        if t.state == TrialState.COMPLETE:
            assert t.intermediate_values[epochs] == t.value
    assert study.user_attrs["identity"]["name"] == "mnist-sample"
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.metric_names == ["test_accuracy"]  # optuna-dashboard names the objective

    # The console: a line per trial with its state and the epochs it trained, and little else.
    console = (result.stdout + result.stderr).splitlines()
    assert len(console) <= 40, "\n".join(console)
    log = "\n".join(console)
    for t in trials:
        trained = len(t.intermediate_values)
        assert re.search(rf"trial +{t.number} {t.state.name} +value=.*, {trained} steps?\) \| best: ", log)
    assert "[Epoch:" not in log and "Launching" not in log and "#0 :" not in log
    assert log.count("FALLING BACK to the bundled") == 1  # the sweep's own data check; not once per trial
    [sweep_dir] = tmp_path.glob("multirun/*/*")
    for t in trials:  # each trial's own lines are in its log file
        assert (
            f"[Epoch: {len(t.intermediate_values)}/" in (sweep_dir / str(t.number) / "main.log").read_text()
        )
    best = study.best_trial
    assert re.search(rf"Best: trial +{best.number} COMPLETE +value={best.value:.4f}", log)
    saved = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert (saved.best_trial, saved.best_value, saved.best_params) == (best.number, best.value, best.params)
    # TensorBoard: one run per trial, grouped by study, its curve and hparams those of the trial.
    study_runs = trial_run_dir(tmp_path, study, 0).parent
    assert sorted(p.name for p in study_runs.iterdir()) == [f"trial-{t.number:04d}" for t in trials]
    for t in trials:
        events = load_events(trial_run_dir(tmp_path, study, t.number))
        assert scalar_curve(events, "accuracy/test") == pytest.approx(t.intermediate_values, abs=1e-6)
        logged = hparams(events)
        assert logged["lr"] == pytest.approx(t.params["params.lr"])
        assert (logged["batch_size"], logged["epoch_count"]) == (
            t.params["params.batch_size"],
            t.params["params.epoch_count"],
        )
    # A venv the shell has not activated (make test's): the hints name its Python, to work as pasted.
    venv_python = "python" if os.environ.get("VIRTUAL_ENV") == sys.prefix else sys.executable
    assert f"Watch the study:   {venv_python} -m pruning_optuna_sweeper.dashboard sqlite:///" in log
    assert f"Report (HTML, PNG): {venv_python} -m pruning_optuna_sweeper report --storage sqlite:///" in log
    assert f"{venv_python} main.py best_of=linearnet-mnist-sample " in log


def test_tensorboard_runs_stay_apart_for_a_recreated_study_and_inside_paths_log(tmp_path: Path) -> None:
    first = run_sweep(tmp_path, "params.epoch_count=1", n_trials=1)
    (tmp_path / "study.db").unlink()
    recreated = run_sweep(tmp_path, "params.epoch_count=1", n_trials=1)
    odd_name = run_sweep(tmp_path, "params.epoch_count=1", "hydra.sweeper.study_name='../escape'", n_trials=1)

    assert first.returncode == recreated.returncode == odd_name.returncode == 0, odd_name.stderr
    runs = tmp_path / "runs" / "linearnet-mnist-sample"
    assert sorted(p.name for p in runs.iterdir()) == ["trial-0000", "trial-0000-2"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["_escape", "linearnet-mnist-sample"]
    assert not (tmp_path / "escape").exists()


def test_a_rerun_resumes_the_study_and_total_trials_caps_it(tmp_path: Path) -> None:
    first = run_sweep(tmp_path, SHORT_EPOCHS, n_trials=2)
    # A batch of 3 asked where one place is left: only one trial is asked for, no FAIL "over budget".
    capped = run_sweep(
        tmp_path, SHORT_EPOCHS, "hydra.sweeper.total_trials=3", "hydra.sweeper.n_jobs=3", n_trials=5
    )
    done = run_sweep(tmp_path, SHORT_EPOCHS, "hydra.sweeper.total_trials=3", n_trials=5)
    fresh = run_sweep(tmp_path, SHORT_EPOCHS, "hydra.sweeper.study_name=fresh", n_trials=2)

    assert first.returncode == capped.returncode == done.returncode == fresh.returncode == 0, (
        capped.stderr + done.stderr
    )
    trials = load(tmp_path).get_trials()
    assert len(trials) == 3
    assert "total_trials=3 reached" in done.stdout + done.stderr
    # The rerun samples new points; a fresh study replays the seed's sweep.
    assert trials[2].params not in [trials[0].params, trials[1].params]
    assert "sampler seeded with" in capped.stdout + capped.stderr
    assert [t.params for t in load(tmp_path, "fresh").get_trials()] == [trials[0].params, trials[1].params]


def test_a_grid_sweep_stops_when_its_grid_is_covered_also_on_a_rerun(tmp_path: Path) -> None:
    grid = [
        "hydra/sweeper/sampler=grid",
        "params.lr=choice(0.01, 0.001)",
        "params.batch_size=512",
        "params.epoch_count=1",
    ]
    first = run_sweep(tmp_path, *grid, n_trials=5)
    again = run_sweep(tmp_path, *grid, n_trials=5)

    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    trials = load(tmp_path).get_trials()
    assert sorted(t.params["params.lr"] for t in trials) == [0.001, 0.01]
    assert (
        "every point of the grid" in again.stdout + again.stderr
        and "Launching" not in again.stdout + again.stderr
    )


@pytest.mark.parametrize(
    ("choice", "warm_up", "epochs_run"),
    [("median", [], [1]), ("percentile", ["hydra.sweeper.pruner.n_warmup_steps=2"], [1, 2])],
)
def test_the_pruner_prunes_a_hopeless_trial(
    tmp_path: Path, choice: str, warm_up: list[str], epochs_run: list[int]
) -> None:
    """By default a trial may stop after its first epoch; a warm-up of 2 keeps it to the second."""
    pruner = [f"hydra/sweeper/pruner={choice}", "hydra.sweeper.pruner.n_startup_trials=2", *warm_up]
    good = run_sweep(tmp_path, *FIXED_GOOD, *pruner, n_trials=2)
    hopeless = run_sweep(
        tmp_path, "params.lr=0.00001", "params.batch_size=64", "params.epoch_count=3", *pruner, n_trials=1
    )

    assert good.returncode == hopeless.returncode == 0, hopeless.stderr
    pruned = load(tmp_path).get_trials()[2]
    assert pruned.state == TrialState.PRUNED
    assert sorted(pruned.intermediate_values) == epochs_run  # of 3
    assert pruned.intermediate_values[epochs_run[-1]] < 0.5
    assert epoch_lines(hopeless.stdout) == [] and len(epoch_lines(trial_log(tmp_path, 2))) == len(epochs_run)
    events = load_events(trial_run_dir(tmp_path, load(tmp_path), 2))
    assert scalar_curve(events, "accuracy/test") == pytest.approx(pruned.intermediate_values, abs=1e-6)
    assert (hparams(events)["epochs_trained"], hparams(events)["outcome"]) == (len(epochs_run), "pruned")


def test_without_a_pruner_the_same_trial_runs_to_the_end(tmp_path: Path) -> None:
    good = run_sweep(tmp_path, *FIXED_GOOD, "hydra/sweeper/pruner=none", n_trials=2)
    hopeless = run_sweep(
        tmp_path,
        "params.lr=0.00001",
        "params.batch_size=64",
        "params.epoch_count=3",
        "hydra/sweeper/pruner=none",
        n_trials=1,
    )

    assert good.returncode == hopeless.returncode == 0
    assert states(load(tmp_path)) == [TrialState.COMPLETE] * 3


def test_hyperband_is_selectable(tmp_path: Path) -> None:
    """The percentile pruner is selected, and prunes, in test_the_pruner_prunes_a_hopeless_trial."""
    # As in Hydra, the last override of a key wins, a range over a value too.
    last_wins = ["params.epoch_count=1", "params.epoch_count=int(interval(2, 3))"]
    result = run_sweep(tmp_path, "hydra/sweeper/pruner=hyperband", *last_wins, n_trials=3)

    assert result.returncode == 0, result.stderr
    assert "HyperbandPruner" in result.stdout + result.stderr
    study = load(tmp_path)
    assert len(study.get_trials()) == 3
    assert set(states(study)) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(t.params["params.epoch_count"] in (2, 3) for t in study.get_trials())
    assert study.user_attrs[HYPERBAND_RESOURCE_ATTR] == 3  # its max_resource, pinned for every worker


def test_a_sweep_on_a_chosen_params_config_sweeps_over_its_values(tmp_path: Path) -> None:
    """`params=<name>` (an exported config) picks the group option; the ranges still apply."""
    result = run_sweep(tmp_path, "params=default", "params.epoch_count=1", n_trials=2)

    assert result.returncode == 0, result.stderr
    study = load(tmp_path, "linearnet-default-mnist-sample")  # named after the params config too
    trials = study.get_trials()
    assert states(study) == [TrialState.COMPLETE] * 2
    assert all(t.user_attrs["fixed_params"]["params"] == "default" for t in trials)
    assert len({t.params["params.lr"] for t in trials}) == 2
    [overrides] = {tuple(OmegaConf.load(p)) for p in tmp_path.glob("multirun/*/*/0/.hydra/overrides.yaml")}
    assert "params=default" in overrides

    # The printed best_of command names the params config too, and still applies the best values.
    printed = best_of_hint(result)
    assert "params=default" in printed.split()
    again = run_main([*shlex.split(printed), "progress=false"], tmp_path)
    assert again.returncode == 0, again.stderr
    best = study.best_trial
    assert (
        f"params: lr={best.params['params.lr']:g} batch_size={best.params['params.batch_size']}"
        in again.stdout
    )
    assert "kept from the command line" not in again.stdout


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path: Path) -> None:
    result = run_sweep(
        tmp_path,
        "hydra/sweeper/sampler=grid",
        "params.lr=choice(0.003, 1e30)",
        "params.batch_size=64",
        "params.epoch_count=1",
        "hydra.sweeper.max_failure_rate=0.5",
        n_trials=2,
    )

    assert result.returncode == 0, result.stderr
    by_lr = {t.params["params.lr"]: t for t in load(tmp_path).get_trials()}
    assert by_lr[1e30].number < by_lr[0.003].number  # the sweep went on after the failure
    assert by_lr[0.003].state == TrialState.COMPLETE
    assert by_lr[1e30].state == TrialState.FAIL
    assert "NonFiniteLossError" in by_lr[1e30].user_attrs["fail_reason"]


def test_a_failing_launcher_stops_the_sweep_with_its_trial_failed_and_a_clear_error(tmp_path: Path) -> None:
    result = run_sweep(
        tmp_path, "hydra/launcher=joblib", "hydra.launcher.backend=nope", "params.epoch_count=1", n_trials=2
    )

    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(
        "error: hydra/launcher=joblib failed to run trial 0: ValueError: Unsupported Joblib backend 'nope'"
    ), last
    [trial] = load(tmp_path).get_trials()  # launched, not left RUNNING, and the sweep stopped there
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith(
        "LaunchError: hydra/launcher=joblib failed to run trial 0: ValueError"
    )


def test_too_many_failures_stop_the_sweep_with_a_clear_error(tmp_path: Path) -> None:
    result = run_sweep(tmp_path, "params.lr=1e30", "params.epoch_count=1", n_trials=3)

    assert result.returncode != 0
    assert "more than max_failure_rate=0.25 of n_trials=3 allows (0)" in result.stderr
    assert states(load(tmp_path)) == [TrialState.FAIL]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.n_trails=5", "Could not override 'hydra.sweeper.n_trails'"),
        (
            "params.lrr=interval(0.1, 0.2)",
            "'params.lrr' (in hydra.sweeper.params or on the command line), which is not a key",
        ),
        ("params.lr=interval(0.1, 0.0001)", "cannot sweep 'params.lr=interval(0.1, 0.0001)'"),
        ("params.epoch_count=interval(3, 3)", "holds a single value (3"),
        ("params.lr=interval(-1.0, 0.1)", "can reach -1.0, which the task's config rejects"),
        ("params.lr=interval(0.001, inf)", "can reach inf, which the task's config rejects"),
        ("+params.momentum=interval(0.1, 0.9)", "'+params.momentum', an override that adds or forces a key"),
        ("model.hidden=0", "invalid config: model.hidden=0: expected an integer >= 1"),
        (
            "hydra.sweeper.pruner.n_startup_trials=-1",
            "hydra.sweeper.pruner cannot be used: Number of startup trials cannot be negative",
        ),
        (
            "hydra/sweeper/sampler=grid",
            "the grid sampler needs a finite grid, but the sweep's range for params.lr is a continuous",
        ),
        (
            "hydra.sweeper.storage=notaurl",
            "storage 'notaurl' is not a storage URL; expected e.g. sqlite:///studies/optuna.db, journal:///",
        ),
        (
            "params=choice(default, no_such_option)",
            "the sweep has params=no_such_option, but config group 'params' has the options",
        ),
        (
            ("hydra/sweeper/pruner=hyperband", "hydra.sweeper.pruner.reduction_factor=1"),
            "hydra.sweeper.pruner fails in use, rehearsed on a few in-memory trials: ZeroDivisionError",
        ),
        ("params.epoch_count=interval(1, 3)", "it is an integer there: expected int(interval(1, 3))"),
        ("run_name=choice(a, b)", "a range for 'run_name', which says where and how a trial runs"),
        ("++params.epoch_count=1", "'++params.epoch_count', an override that adds or forces a key"),
        (
            "hydra.sweeper.storage=sqlite:///:memory:",
            "storage=sqlite:///:memory: is an in-memory SQLite database",
        ),
        (
            ("hydra.job.chdir=true", "hydra.sweeper.storage=sqlite:///relative.db"),
            "is a relative SQLite path and hydra.job.chdir=true",
        ),
        ("best_of=nosuch", "the sweep has best_of=nosuch, which trains once with a study's best parameters"),
        ("run_name=mine", "the sweep has run_name=mine, which the sweep sets for each trial"),
    ],
)
def test_bad_sweep_settings_fail_before_the_first_trial(
    tmp_path: Path, override: str | tuple[str, ...], message: str
) -> None:
    result = run_sweep(
        tmp_path, *([override] if isinstance(override, str) else override), n_trials=2, timeout=120
    )

    assert result.returncode != 0
    assert message in result.stderr
    assert "Launching" not in result.stdout
    assert "Traceback" not in result.stderr
    if (
        "error: " in result.stderr
    ):  # ours: one paragraph, the last thing printed (Hydra's own errors are its own)
        assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")
    if (tmp_path / "study.db").exists():
        assert optuna.get_all_study_names(sqlite_url(tmp_path)) == []


PG = "postgresql+psycopg://sweeper:s3cret-pw@127.0.0.1:1/studies"


@pytest.mark.parametrize(
    ("mode", "override", "masked"),
    [
        (
            "sweep",
            f"hydra.sweeper.storage={PG}",
            "hydra.sweeper.storage=postgresql+psycopg://sweeper:***@127.0.0.1",
        ),
        ("single run", f"storage={PG}", "storage=postgresql+psycopg://sweeper:***@127.0.0.1"),
        (
            "single run",
            "storage='postgresql+psycopg://sweeper@127.0.0.1:1/studies?password=s3cret-pw'",
            "studies?password=***'",
        ),
        ("single run", "storage=mysql+mysqldb://sweeper@127.0.0.1:1/studies?passwd=s3cret-pw", "?passwd=***"),
        # Forms a key-by-key check would let through: Hydra echoes or logs them all.
        ("single run", f"storage ={PG}", "storage =postgresql+psycopg://sweeper:***@"),
        ("single run", f"storage@_global_={PG}", "storage@_global_=postgresql+psycopg://sweeper:***@"),
        ("single run", f"storage=['{PG}']", "storage=['postgresql+psycopg://sweeper:***@"),
        (
            "single run",
            "storage=postgresql+psycopg://sweeper:s3cret(pw@127.0.0.1:1/studies",
            "sweeper:***@127.0.0.1",
        ),
        (
            "sweep",
            f"storage=choice('{PG}','sqlite:///x.db')",
            "storage=choice('postgresql+psycopg://sweeper:***@",
        ),
    ],
)
def test_a_storage_password_on_the_command_line_is_refused_unprinted(
    tmp_path: Path, mode: str, override: str, masked: str
) -> None:
    args = (
        sweep_args(tmp_path, n_trials=1)
        if mode == "sweep"
        else [*offline_args(tmp_path), "params.epoch_count=1"]
    )
    result = run_main([*args, override], tmp_path, timeout=120)

    assert result.returncode != 0
    assert f"error: {override.split('s3cret')[0]}" in result.stderr
    assert (
        masked in result.stderr and "holds a password" in result.stderr and "SWEEP_STORAGE" in result.stderr
    )
    assert "s3cret" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"s3cret" in p.read_bytes()]


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        (
            'storage="postgresql+psycopg://sweeper:s3cret pw@127.0.0.1:1/studies"',
            "storage=<a URL whose password is not shown>",
        ),
        (
            "storage=postgresql+psycopg://sweeper:s3cret@pw@127.0.0.1:1/studies",
            "storage=postgresql+psycopg://sweeper:***@127.0.0.1",
        ),
    ],
)
def test_a_password_with_a_space_or_a_raw_at_is_refused_unprinted(
    tmp_path: Path, override: str, shown: str
) -> None:
    result = run_main([*offline_args(tmp_path), "params.epoch_count=1", override], tmp_path, timeout=120)

    assert result.returncode != 0
    assert f"error: {shown}" in result.stderr and "holds a password" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr and "pw@" not in result.stdout + result.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"s3cret" in p.read_bytes()]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg://sweeper:s3cret-pw@127.0.0.1:1/studies",
            "postgresql+psycopg://sweeper:***@127.0.0.1:1/studies",
        ),
        ("postgresql+psycopg://sweeper@127.0.0.1:1/studies?password=s3cret-pw", "studies?password=***"),
    ],
)
def test_a_storage_password_from_the_environment_is_masked(tmp_path: Path, url: str, masked: str) -> None:
    args = [a for a in sweep_args(tmp_path, n_trials=1) if not a.startswith("storage=")]
    result = run_main(args, tmp_path, timeout=120, SWEEP_STORAGE=url)

    assert result.returncode != 0
    assert "cannot open storage postgresql+psycopg://sweeper" in result.stderr and masked in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_a_sweep_that_does_not_fit_its_study_is_refused_and_a_narrower_range_is_not(tmp_path: Path) -> None:
    first = run_sweep(tmp_path, "params.epoch_count=1", n_trials=1)
    other = run_sweep(tmp_path, "params.epoch_count=1", "hydra.sweeper.direction=minimize", n_trials=1)
    fewer_choices = run_sweep(
        tmp_path, "params.epoch_count=1", "params.batch_size=choice(64, 128)", n_trials=1
    )
    narrower = run_sweep(
        tmp_path, "params.epoch_count=1", "params.lr=tag(log, interval(0.001, 0.01))", n_trials=1
    )

    assert first.returncode == 0, first.stderr
    assert other.returncode != 0
    assert "direction=minimize, but study 'linearnet-mnist-sample' in sqlite:///" in other.stderr
    assert "was created to maximize" in other.stderr
    assert fewer_choices.returncode != 0 and "Traceback" not in fewer_choices.stderr
    assert (
        "error: the sweep's range for 'params.batch_size' is CategoricalDistribution(choices=(64, 128))"
        in fewer_choices.stderr
    )
    assert "sampled it from CategoricalDistribution(choices=(32, 64, 128, 256, 512))" in fewer_choices.stderr
    assert narrower.returncode == 0, narrower.stderr
    trials = load(tmp_path).get_trials()
    assert states(load(tmp_path)) == [TrialState.COMPLETE] * 2
    assert 0.001 <= trials[1].params["params.lr"] <= 0.01


def test_a_study_recorded_on_other_data_refuses_this_sweep(tmp_path: Path) -> None:
    """The same refusal without a second dataset on disk: a study that says it was run on other data."""
    study = optuna.create_study(
        study_name="linearnet-mnist-sample", storage=sqlite_url(tmp_path), direction="maximize"
    )
    other = {"name": "mnist", "train_size": 60000, "test_size": 10000, "sha256": "0" * 64}
    study.set_user_attr("identity", other)
    result = run_sweep(tmp_path, "params.epoch_count=1", n_trials=1)

    assert result.returncode != 0
    assert (
        "was run on name=mnist, train_size=60000, test_size=10000, sha256=000000000000, but this sweep's is "
        in result.stderr
    )
    assert "name=mnist-sample, train_size=8000" in result.stderr
    assert load(tmp_path).get_trials() == [] and load(tmp_path).user_attrs["identity"] == other


@pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason="needs a second dataset: the full MNIST set in ../shared/data/mnist"
)
def test_a_sweep_on_other_data_into_the_same_study_is_refused(tmp_path: Path) -> None:
    same_study = ["hydra.sweeper.study_name=shared-study", "params.epoch_count=1", "params.batch_size=512"]
    on_sample = run_sweep(tmp_path, *same_study, n_trials=1)
    on_full = run_main(
        [*sweep_args(tmp_path, *same_study, n_trials=1), f"paths.data={SHARED_MNIST}"], tmp_path
    )

    assert on_sample.returncode == 0, on_sample.stderr
    assert on_full.returncode != 0
    assert "study 'shared-study' in sqlite:///" in on_full.stderr
    assert "was run on name=mnist-sample, train_size=8000" in on_full.stderr
    assert "this sweep's is name=mnist, train_size=60000" in on_full.stderr
    assert len(load(tmp_path, "shared-study").get_trials()) == 1


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, which a test run started in the background without job control has ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("signum", "resumed_lr"), [(signal.SIGINT, None), (signal.SIGTERM, 0.01)])
def test_an_interrupted_sweep_leaves_no_running_trial_and_resumes(
    tmp_path: Path, signum: int, resumed_lr: float | None
) -> None:
    command = ["params.epoch_count=10", "params.batch_size=32", "hydra/sweeper/pruner=none"]
    args = sweep_args(tmp_path, *command, n_trials=5)
    sweep = subprocess.Popen(
        [sys.executable, str(MAIN), *args],
        cwd=tmp_path,
        env=main_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )
    try:

        def running_with_progress() -> bool:
            try:
                trials = load(tmp_path).get_trials()
            except KeyError:
                return False
            # Reported an epoch and has three more to go: still running when the signal lands.
            return any(
                t.state == TrialState.RUNNING and 1 <= max(t.intermediate_values, default=0) <= 7
                for t in trials
            )

        wait_for(running_with_progress, timeout=120, what="a running trial that reported an epoch")
        sweep.send_signal(signum)
        stdout, stderr = sweep.communicate(timeout=60)
    finally:
        sweep.kill()
        sweep.wait(timeout=10)
    assert sweep.returncode == 128 + signum  # the shell's convention for a process ended by a signal
    assert "Sweep interrupted: trial" in stdout + stderr and "Traceback" not in stderr

    interrupted = load(tmp_path).get_trials()
    assert TrialState.RUNNING not in [t.state for t in interrupted]
    failed = [t for t in interrupted if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["fail_reason"].startswith("interrupted")
    queued = [t for t in interrupted if t.state == TrialState.WAITING]
    assert len(queued) == 1 and retry_of(queued[0]) == failed[0].number

    # Resumed with ranges where the first command fixed values: the retry samples them
    # and records what it ran with, not the first run's values. It keeps its queued lr,
    # unless this command fixes lr: then it runs with this command's lr, and says so.
    fixed_lr = [] if resumed_lr is None else [f"params.lr={resumed_lr}"]
    ranges = ["params.epoch_count=int(interval(1, 2))", "params.batch_size=choice(256, 512)"]
    resumed = run_main(sweep_args(tmp_path, *ranges, *fixed_lr, n_trials=1), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = load(tmp_path).get_trials()
    retried = [t for t in after if retry_of(t) == failed[0].number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert (
        failed[0].user_attrs["fixed_params"].items()
        >= {"params.epoch_count": "10", "params.batch_size": "32"}.items()
    )
    no_range = f"trial {retried[0].number} was queued with params.lr, which this sweep has no range for"
    if resumed_lr is None:
        assert retried[0].params["params.lr"] == failed[0].params["params.lr"]
        assert (
            "params.batch_size" not in retried[0].user_attrs["fixed_params"]
            and no_range not in resumed.stdout + resumed.stderr
        )
    else:
        # Optuna's retry keeps its queued params.lr on record; the fixed value is what it ran with.
        assert retried[0].user_attrs["fixed_params"]["params.lr"] == str(resumed_lr)
        assert no_range in resumed.stdout + resumed.stderr
    assert trained_values(retried[0])["params.lr"] == (resumed_lr or failed[0].params["params.lr"])
    assert len(after) == len(interrupted)


def test_the_closing_hint_names_the_best_trial_s_params_config_and_data_not_this_command_s(
    tmp_path: Path,
) -> None:
    # The best trial was run by an earlier command, on the default params config, everything fixed.
    study = optuna.create_study(study_name="hint", storage=sqlite_url(tmp_path), direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={},
            distributions={},
            value=1.0,
            user_attrs={"fixed_params": {"params.epoch_count": 1, "params.batch_size": 512}},
        )
    )
    data = tmp_path / "no-mnist-here"
    on_chosen_config = [
        "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=hint",
        f"storage={sqlite_url(tmp_path)}", "params=default", "params.epoch_count=1", "params.batch_size=512",
        "data.download=false", "progress=false",
    ]  # fmt: skip
    swept = run_main(on_chosen_config, tmp_path, DS_DATA_DIR=str(data))

    assert swept.returncode == 0, swept.stderr
    assert load(tmp_path, "hint").get_trials()[1].user_attrs["fixed_params"]["params"] == "default"
    hint = best_of_hint(swept)
    assert "params=" not in hint.replace("params.", "")  # trial 0 named no params config
    assert f"paths.data={data}" in hint and "data.download=false" in hint  # DS_DATA_DIR, spelled out
    trained = run_main([*shlex.split(hint), "progress=false"], tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "best_of=hint: trial 0" in trained.stdout


def test_best_of_reproduces_the_best_trial_and_explicit_overrides_win(tmp_path: Path) -> None:
    swept = run_sweep(tmp_path, SHORT_EPOCHS, "model.hidden=16", "seed=5", n_trials=3)
    assert swept.returncode == 0, swept.stderr
    best = load(tmp_path).best_trial
    # The command the sweep prints, as a shell would split it: this study, its storage and data.
    printed = best_of_hint(swept)
    assert printed.startswith("best_of=linearnet-mnist-sample ") and "paths.data=" in printed

    again = run_main([*shlex.split(printed), "progress=false", "hydra.run.dir=best"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"trial {best.number} of sqlite:///" in again.stdout
    source = OmegaConf.load(tmp_path / "best" / ".hydra" / "best_of.yaml")
    assert source.trial == best.number and source.value == best.value
    # Fixed on the sweep's command line, applied again as the training config types them:
    # the same model, weights and batches.
    assert source.applied == {**best.params, "model.hidden": 16, "seed": 5}
    assert "'model.hidden': 16" in again.stdout and "'seed': 5" in again.stdout
    lines = epoch_lines(again.stdout)
    assert len(lines) == best.params["params.epoch_count"]
    assert math.isclose(lines[-1][2], best.value, abs_tol=5e-5)

    shortened = run_main(
        [
            *offline_args(tmp_path),
            "best_of=linearnet-mnist-sample",
            f"storage={sqlite_url(tmp_path)}",
            "params.epoch_count=1",
        ],
        tmp_path,
    )
    assert shortened.returncode == 0
    assert "kept from the command line: ['params.epoch_count']" in shortened.stdout
    assert len(epoch_lines(shortened.stdout)) == 1

    regrouped = run_main(
        [
            *offline_args(tmp_path),
            "best_of=linearnet-mnist-sample",
            f"storage={sqlite_url(tmp_path)}",
            "params=default",
        ],
        tmp_path,
    )
    assert regrouped.returncode == 0
    assert (
        "kept from the command line: ['params.batch_size', 'params.epoch_count', 'params.lr']"
        in regrouped.stdout
    )
    assert len(epoch_lines(regrouped.stdout)) == 3  # params/default.yaml's epoch_count


def test_best_of_on_other_data_than_the_study_s_is_refused(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="full", storage=sqlite_url(tmp_path), direction="maximize")
    study.set_user_attr(
        "identity", {"name": "mnist", "train_size": 60000, "test_size": 10000, "sha256": "0" * 64}
    )
    study.enqueue_trial({"params.lr": 0.01})
    study.optimize(lambda t: t.suggest_float("params.lr", 1e-4, 1e-1, log=True), n_trials=1)
    result = run_main([*offline_args(tmp_path), "best_of=full", f"storage={sqlite_url(tmp_path)}"], tmp_path)

    assert result.returncode != 0
    assert "error: study 'full' in sqlite:///" in result.stderr
    assert (
        "was run on name=mnist, train_size=60000, test_size=10000, sha256=000000000000, but this run's is "
        in result.stderr
    )
    assert "name=mnist-sample, train_size=8000" in result.stderr and "Expected the study's." in result.stderr
    assert "Traceback" not in result.stderr


def a_trial_on_another_params_config(study: optuna.Study) -> None:
    trial = study.ask({"params.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    trial.set_user_attr("fixed_params", {"params": "tuned"})
    study.tell(trial, 0.9)


def a_trial_of_other_code(study: optuna.Study) -> None:
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)


@pytest.mark.parametrize(
    ("best_trial", "messages"),
    [
        (
            a_trial_on_another_params_config,
            [
                "error: best_of=s: trial 0 ran with params=tuned, this run has params=default; ",
                "expected params=tuned on this command line",
            ],
        ),
        (
            a_trial_of_other_code,
            ["error: best_of=s: trial 0 of study 's' in sqlite:///", "has x, not a key of this run's config"],
        ),
    ],
)
def test_best_of_a_trial_it_cannot_apply_says_why_before_training(
    tmp_path: Path, best_trial, messages: list[str]
) -> None:
    best_trial(optuna.create_study(study_name="s", storage=sqlite_url(tmp_path), direction="maximize"))
    result = run_main([*offline_args(tmp_path), "best_of=s", f"storage={sqlite_url(tmp_path)}"], tmp_path)

    assert result.returncode != 0 and "Traceback" not in result.stderr
    for message in messages:
        assert message in result.stderr
    assert "[Epoch:" not in result.stdout


def test_best_of_trains_with_every_value_the_trial_trained_with(tmp_path: Path) -> None:
    """Not the values its params config holds now (edited since, or another
    file under the same name): those the trial's task recorded."""
    study = optuna.create_study(study_name="s", storage=sqlite_url(tmp_path), direction="maximize")
    trial = study.ask({"params.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    trial.set_user_attr(
        "config", {"params": {"lr": trial.params["params.lr"], "batch_size": 512, "epoch_count": 1}}
    )
    study.tell(trial, 0.9)
    result = run_main(
        [*offline_args(tmp_path), "best_of=s", f"storage={sqlite_url(tmp_path)}", "progress=false"], tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert f"params: lr={trial.params['params.lr']:g} batch_size=512 epoch_count=1" in result.stdout
    # params/default.yaml has 64 and 3: said, not silently replaced.
    assert (
        "as trial 0 trained, where this run's config has other values: params.batch_size=512 (not 64)"
        in result.stdout
    )


def test_best_of_with_a_bad_value_fails_before_it_reads_data_or_a_study(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    result = run_main(
        [*offline_args(tmp_path), "best_of=any", f"storage=sqlite:///{missing}", "params.lr=-1"], tmp_path
    )

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        result.stderr.rstrip().splitlines()[-1].startswith("error: invalid config: params.lr=-1.0: expected")
    )
    assert "sample" not in result.stdout + result.stderr  # no data loaded, no fallback said
    assert not missing.exists() and not list(tmp_path.glob("outputs/*/*/.hydra/best_of.yaml"))


def test_best_of_a_missing_study_lists_the_studies_present(tmp_path: Path) -> None:
    run_sweep(tmp_path, "params.epoch_count=1", n_trials=1)
    result = run_main([*offline_args(tmp_path), "best_of=nope", f"storage={sqlite_url(tmp_path)}"], tmp_path)

    assert result.returncode != 0
    assert "no study 'nope' in sqlite:///" in result.stderr
    assert "studies present: linearnet-mnist-sample" in result.stderr


def test_a_sweep_on_the_validation_accuracy_records_both_and_prunes_on_it(tmp_path: Path) -> None:
    result = run_sweep(
        tmp_path, "objective=val_accuracy", "params.epoch_count=2", "params.batch_size=256", n_trials=1
    )

    assert result.returncode == 0, result.stderr
    study = load(tmp_path, "linearnet-mnist-sample-val_accuracy")  # not mixed with test-accuracy trials
    assert study.metric_names == ["val_accuracy"]
    [trial] = study.get_trials()
    assert trial.value == trial.user_attrs["val_accuracy"] == trial.intermediate_values[2]
    assert 0.5 < trial.user_attrs["test_accuracy"] < 1 and trial.user_attrs["epochs_trained"] == 2
