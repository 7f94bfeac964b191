"""Faults and bad input a probe found, each through the real command line: one `error:` paragraph
naming the value and what is expected, exit status 1, no traceback, nothing recorded lost."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from tests.cli import main_env, offline_args, run_main
from tests.sweep_helpers import sqlite_url, sweep_args
from tests.test_storage_refusals import can_mount, tmpfs

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one `error:` paragraph of a refused command, which holds every fragment."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    for fragment in fragments:
        assert fragment in error, error
    return error


def run_module(module: str, *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=main_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- a single run's config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("~model", ["the config has no value for 'model'", "expected model=... on the command line"]),
        (
            "seed=${oc.env:NO_SUCH_VARIABLE_HERE}",
            ["reads the environment variable NO_SUCH_VARIABLE_HERE, which is not set", "expected it set"],
        ),
        ("evaluate=no/such/model.pt", ["evaluate='no/such/model.pt'", "(not found)"]),
        ("best_of=", ["best_of=''", "expected the name of a study"]),
    ],
    ids=["deleted-model", "unset-env", "evaluate-not-found", "empty-best-of"],
)
def test_a_run_s_bad_config_is_one_error(tmp_path: Path, override: str, fragments: list[str]) -> None:
    result = run_main([*offline_args(tmp_path), override], tmp_path)
    refused(result, *fragments)
    assert "Epoch" not in result.stdout


def test_an_unset_env_variable_in_a_sweep_is_refused_before_it_starts(tmp_path: Path) -> None:
    result = run_main(sweep_args(tmp_path, "storage=${oc.env:NO_SUCH_VARIABLE_HERE}"), tmp_path)
    refused(result, "NO_SUCH_VARIABLE_HERE, which is not set")
    assert not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("model", [[], ["best_of_model=true"]], ids=["train", "stored-model"])
def test_best_of_a_missing_study_is_said_before_any_data_is_loaded(tmp_path: Path, model: list[str]) -> None:
    optuna.create_study(study_name="present", storage=sqlite_url(tmp_path))
    result = run_main(
        [*offline_args(tmp_path), "best_of=nosuchstudy", *model, f"storage={sqlite_url(tmp_path)}"], tmp_path
    )
    refused(result, "no study 'nosuchstudy'", "studies present: present")
    assert "FALLING BACK" not in result.stdout + result.stderr


def test_a_study_name_longer_than_postgresql_holds_is_refused(tmp_path: Path) -> None:
    result = run_main(sweep_args(tmp_path, f"hydra.sweeper.study_name={'s' * 600}"), tmp_path)
    refused(result, "has 600 characters: expected at most 512")
    assert not (tmp_path / "study.db").exists()


# --- a saved model, tampered with ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("saved")
    result = run_main([*offline_args(workdir), "params.epoch_count=1", "hydra.run.dir=run"], workdir)
    assert result.returncode == 0, result.stderr
    return workdir / "run" / "model.pt"


def _nan_weights(payload: dict[str, Any]) -> None:
    for tensor in payload["state_dict"].values():
        tensor.fill_(float("nan"))


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "nested-target": (
        lambda p: p["config"]["model"].update(hidden={"_target_": "os.system", "command": "true"}),
        "its config's model cannot be built",
    ),
    "negative-hidden": (lambda p: p["config"]["model"].update(hidden=-5), "negative dimension -5"),
    "config-string": (lambda p: p.update(config="model: linearnet"), "its config is str"),
    "config-without-model": (lambda p: p["config"].pop("model"), "without a model mapping"),
    "state-dict-string": (lambda p: p.update(state_dict="weights"), "its state_dict is not a mapping"),
    "nan-weights": (_nan_weights, "its weights hold NaN or infinite values"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_model_file_is_refused_with_what_is_wrong(
    tmp_path: Path, saved_model: Path, case: str
) -> None:
    tamper, fragment = TAMPERED[case]
    payload = torch.load(saved_model, weights_only=True)
    tamper(payload)
    torch.save(payload, tmp_path / "model.pt")

    result = run_main([*offline_args(tmp_path), f"evaluate={tmp_path / 'model.pt'}"], tmp_path)

    refused(result, f"evaluate='{tmp_path / 'model.pt'}'", fragment)
    assert "Test Accuracy" not in result.stdout


# --- best_of on a study whose records were tampered with ----------------------------------------------


def _study_with_a_best_trial(tmp_path: Path, user_attrs: dict[str, Any]) -> None:
    study = optuna.create_study(study_name="made", storage=sqlite_url(tmp_path), direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"params.lr": 0.01, "model": "mlp"},
            distributions={
                "params.lr": FloatDistribution(1e-4, 0.1, log=True),
                "model": CategoricalDistribution(["linearnet", "mlp"]),
            },
            value=0.9,
            user_attrs=user_attrs,
        )
    )


def test_best_of_a_tampered_choice_index_is_one_error(tmp_path: Path) -> None:
    _study_with_a_best_trial(tmp_path, {})
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute("UPDATE trial_params SET param_value = 7 WHERE param_name = 'model'")

    result = run_main([*offline_args(tmp_path), "best_of=made", f"storage={sqlite_url(tmp_path)}"], tmp_path)

    refused(result, "study 'made'", "its best trial's record cannot be read")
    assert "Epoch" not in result.stdout


def test_best_of_a_tampered_config_record_is_one_error(tmp_path: Path) -> None:
    _study_with_a_best_trial(tmp_path, {"config": "params: {lr: 1}"})

    result = run_main([*offline_args(tmp_path), "best_of=made", f"storage={sqlite_url(tmp_path)}"], tmp_path)

    refused(result, "trial 0's user attr 'config' is damaged", "expected a mapping")


# --- the dashboard's address and folder ------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_the_dashboard_refuses_a_bad_address_or_folder_before_serving(tmp_path: Path, busy_port: int) -> None:
    url = sqlite_url(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    cases = [
        (["--port", "70000"], "--port 70000: expected a port number from 1 to 65535"),
        (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid': not a host name or address"),
        (["--port", str(busy_port)], f"--port {busy_port} on 127.0.0.1: in use by another program"),
        (["--port", str(free), "--artifact-dir", str(tmp_path / "a-file")], "cannot be made a folder"),
    ]
    for args, fragment in cases:
        result = run_module("pruning_optuna_sweeper.dashboard", url, *args, cwd=tmp_path, timeout=30)
        refused(result, fragment)


# --- model --out ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("stored")
    result = run_main(sweep_args(workdir, "params.epoch_count=1", n_trials=1), workdir)
    assert result.returncode == 0, result.stderr
    return workdir


def test_model_out_under_a_file_is_one_error(stored_trial: Path) -> None:
    (stored_trial / "a-file").write_text("not a folder")
    result = run_module(
        "pruning_optuna_sweeper",
        "--storage",
        sqlite_url(stored_trial),
        "model",
        "linearnet-mnist-sample",
        "--out",
        str(stored_trial / "a-file" / "m.pt"),
        cwd=stored_trial,
    )
    refused(result, "a-file is a file, not a folder")


@pytest.mark.skipif(not can_mount(), reason="a read-only folder is a read-only tmpfs mount, which needs root")
def test_model_out_into_a_read_only_folder_is_one_error(stored_trial: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = run_module(
            "pruning_optuna_sweeper",
            "--storage",
            sqlite_url(stored_trial),
            "model",
            "linearnet-mnist-sample",
            "--out",
            str(disk / "m.pt"),
            cwd=stored_trial,
        )
    refused(result, "Read-only file system", "expected a writable path")


# --- a full disk -------------------------------------------------------------------------------------------


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(bytes(64 * 1024))
        except OSError:
            pass  # full


@pytest.mark.skipif(not can_mount(), reason="a full disk is a tmpfs mount, which needs root")
def test_a_single_run_on_a_full_disk_is_refused_before_it_starts(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "512k") as disk:
        _fill(disk)
        result = run_main([*offline_args(tmp_path), f"hydra.run.dir={disk / 'run'}"], tmp_path)
    refused(result, f"hydra.run.dir='{disk / 'run'}'", "its disk is full")


@pytest.mark.skipif(not can_mount(), reason="a full disk is a tmpfs mount, which needs root")
def test_a_sweep_whose_output_folder_is_full_is_refused_before_its_first_trial(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "512k") as disk:
        _fill(disk)
        result = run_main(sweep_args(tmp_path, f"hydra.sweep.dir={disk / 'sweep'}", n_trials=2), tmp_path)
    refused(result, f"hydra.sweep.dir='{disk / 'sweep'}'", "its disk is full")
    assert not (tmp_path / "study.db").exists()


@pytest.mark.skipif(not can_mount(), reason="a full disk is a tmpfs mount, which needs root")
def test_a_sweep_folder_that_fills_as_trials_start_stops_it_with_no_trial_running(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "2m") as disk:
        (disk / "sweep").mkdir()
        args = sweep_args(tmp_path, "hydra.sweep.dir=${oc.env:SWEEP_DIR}", n_trials=2)
        _fill(disk)  # the folder is known only once Hydra resolves it: no check before the sweep
        result = run_main(args, tmp_path, SWEEP_DIR=str(disk / "sweep"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "No space left on device" in result.stderr.splitlines()[-1]
    trials = optuna.load_study(study_name="linearnet-mnist-sample", storage=sqlite_url(tmp_path)).trials
    assert TrialState.RUNNING not in [t.state for t in trials]


@pytest.mark.skipif(not can_mount(), reason="a full disk is a tmpfs mount, which needs root")
def test_a_study_s_disk_that_fills_leaves_no_trial_running_not_even_one_being_asked(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "2m") as disk:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(bytes(free - 900 * 1024))  # the study and a few trials' models
        url = f"sqlite:///{disk / 'optuna.db'}"
        args = sweep_args(tmp_path, "params.epoch_count=1", n_trials=30, parallel=True)
        result = run_main([*args, f"storage={url}"], tmp_path)

        refused(result, f"storage {url} refused a write during the sweep", "database or disk is full")
        trials = optuna.load_study(study_name="linearnet-mnist-sample", storage=url).get_trials()
    assert trials and TrialState.RUNNING not in [t.state for t in trials], [t.state for t in trials]
