"""Watching and using a sweep's study: a real `optuna-dashboard`, and `python -m pruning_optuna_sweeper`."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from pruning_optuna_sweeper.study import CONFIG_ATTR, FIXED_PARAMS_ATTR
from tests.cli import MAIN, ROOT, epoch_lines, main_env, offline_args, run_cli, run_main
from tests.dashboard import dashboard
from tests.sweep_helpers import load, run_sweep, sqlite_url, sweep_args, wait_for

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

STUDY = "linearnet-mnist-sample"


def by_number(detail: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {t["number"]: t for t in detail["trials"]}


def steps(trial: dict[str, Any]) -> dict[int, float]:
    return {v["step"]: v["value"] for v in trial["intermediate_values"]}


def test_the_dashboard_serves_the_study_with_its_pruned_trial(swept_study: Path, tmp_path: Path) -> None:
    study = load(swept_study)
    trials = study.get_trials()

    with dashboard(sqlite_url(swept_study), tmp_path) as server:
        listed = server.get("/api/studies")["study_summaries"]
        assert [s["study_name"] for s in listed] == [STUDY]
        assert listed[0]["directions"] == ["maximize"]
        detail = server.get(f"/api/studies/{listed[0]['study_id']}")

    assert detail["name"] == STUDY
    assert detail["has_intermediate_values"] is True
    served = by_number(detail)
    assert sorted(served) == [t.number for t in trials] == [0, 1, 2, 3]
    assert [served[t.number]["state"] for t in trials] == ["Complete", "Complete", "Pruned", "Fail"]
    for t in trials:
        assert steps(served[t.number]) == t.intermediate_values
    assert sorted(steps(served[2])) == [1, 2]  # pruned after epoch 2 of 3
    for t in trials[:2]:
        assert served[t.number]["values"] == [t.value]
    assert [b["number"] for b in detail["best_trials"]] == [study.best_trial.number]


def test_the_dashboard_shows_a_running_sweep_live(tmp_path: Path) -> None:
    # The dashboard does not create tables, and a short sweep could end while it
    # starts: the study is created first, as the sweep would create it, and the
    # dashboard watches it before the sweep's first trial. The dashboard re-reads a
    # study's trials at most every 2 s (optuna_dashboard/_storage.py), so each trial
    # runs longer than that (10 epochs of about 0.3 s): some read lands after an epoch.
    optuna.create_study(study_name=STUDY, storage=sqlite_url(tmp_path), direction="maximize")
    args = sweep_args(
        tmp_path, "params.epoch_count=10", "params.batch_size=4", "hydra/sweeper/pruner=none", n_trials=2
    )
    with dashboard(sqlite_url(tmp_path), tmp_path) as server:
        study_id = server.study_id(STUDY)
        assert study_id is not None
        with (tmp_path / "sweep.out").open("w") as out, (tmp_path / "sweep.err").open("w") as err:
            sweep = subprocess.Popen(
                [sys.executable, str(MAIN), *args], cwd=tmp_path, env=main_env(), stdout=out, stderr=err
            )
        try:
            seen: list[dict[str, Any]] = []

            def running_with_progress() -> bool:
                assert sweep.poll() is None, "the sweep ended before the dashboard showed a running trial"
                detail = server.try_get(f"/api/studies/{study_id}") or {"trials": []}
                seen[:] = [
                    t for t in detail["trials"] if t["state"] == "Running" and t["intermediate_values"]
                ]
                return bool(seen)

            wait_for(
                running_with_progress, timeout=60, what="the dashboard to show a running trial with an epoch"
            )
            live = seen[0]
            assert 1 <= len(live["intermediate_values"]) <= 10
            assert all(0.0 <= v["value"] <= 1.0 for v in live["intermediate_values"])

            assert sweep.wait(timeout=120) == 0, (tmp_path / "sweep.err").read_text()
            finished = load(tmp_path).get_trials()
            assert [t.state for t in finished] == [TrialState.COMPLETE] * 2

            def all_complete() -> bool:
                detail = server.try_get(f"/api/studies/{study_id}") or {"trials": []}
                return [t["state"] for t in detail["trials"]] == ["Complete"] * 2

            wait_for(all_complete, timeout=30, what="the dashboard to show both trials COMPLETE")
            detail = server.get(f"/api/studies/{study_id}")
        finally:
            if sweep.poll() is None:
                sweep.send_signal(signal.SIGINT)
                try:
                    sweep.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    sweep.kill()
                    sweep.wait(timeout=10)

    served = by_number(detail)
    for t in finished:
        assert steps(served[t.number]) == t.intermediate_values
        assert sorted(t.intermediate_values) == list(range(1, 11))
    # What it showed live was the trial's progress so far: a prefix of its final curve.
    final = steps(served[live["number"]])
    assert steps(live) == {step: final[step] for step in steps(live)}


# --- python -m pruning_optuna_sweeper ----------------------------------------------------------------


def run_cli_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m pruning_optuna_sweeper args` in a subprocess: everything it prints, whatever prints it."""
    return subprocess.run(
        [sys.executable, "-m", "pruning_optuna_sweeper", *args],
        cwd=cwd,
        env=main_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_list_shows_counts_by_state_and_the_best_value(swept_study: Path, tmp_path: Path) -> None:
    study = load(swept_study)
    counts = Counter(t.state.name for t in study.get_trials())
    assert counts == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}

    result = run_cli_process("--storage", sqlite_url(swept_study), "list", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"studies in {sqlite_url(swept_study)}:",
        f"  {STUDY}: 2 COMPLETE, 1 FAIL, 1 PRUNED; best value {study.best_value:.4f}",
    ]


def test_show_and_export_the_best_trial_then_train_with_it(tmp_path: Path) -> None:
    swept = run_sweep(
        tmp_path,
        "params.lr=tag(log, interval(1e-3, 1e-2))",
        "params.batch_size=64",
        "params.epoch_count=int(interval(1, 2))",
        "hydra/sweeper/pruner=none",
        n_trials=3,
    )
    assert swept.returncode == 0, swept.stderr
    best = load(tmp_path).best_trial
    lr, epochs = best.params["params.lr"], best.params["params.epoch_count"]
    assert set(best.params) == {
        "params.lr",
        "params.epoch_count",
    }  # batch_size was pinned on the command line
    assert best.user_attrs["config"] == {
        "params": {"lr": lr, "batch_size": 64, "epoch_count": epochs}
    }  # by its task
    storage = ["--storage", sqlite_url(tmp_path)]

    shown = run_cli("show", STUDY, *storage, cwd=tmp_path)  # --storage after the command works too
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^best: trial +{best.number} COMPLETE value={best.value:.4f}", shown.stdout, re.M)
    assert f"  params.lr={lr}\n" in shown.stdout
    assert f"  params.epoch_count={epochs}\n" in shown.stdout
    assert "  params.batch_size=64\n" in shown.stdout

    params_dir = tmp_path / "elsewhere" / "params"
    exported = run_cli(*storage, "export", STUDY, "--name", "best_x", "--dir", str(params_dir), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    target = params_dir / "best_x.yaml"
    assert f"wrote {target}; select it with params=best_x" in exported.stdout
    written = OmegaConf.to_container(OmegaConf.load(target))
    assert written == {"lr": lr, "batch_size": 64, "epoch_count": epochs}
    assert (
        type(written["lr"]) is float
        and type(written["batch_size"]) is int
        and type(written["epoch_count"]) is int
    )

    trained = run_main(
        ["params=best_x", f"hydra.searchpath=[file://{params_dir.parent}]", *offline_args(tmp_path)], tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    assert f"params: lr={lr:g} batch_size=64 epoch_count={epochs}" in trained.stdout
    lines = epoch_lines(trained.stdout)
    assert [(e, n) for e, n, _, _ in lines] == [(e, epochs) for e in range(1, epochs + 1)]
    assert math.isclose(lines[-1][2], best.value, abs_tol=5e-5)  # the same run as the best trial

    before = target.read_bytes()
    again = run_cli(*storage, "export", STUDY, "--name", "best_x", "--dir", str(params_dir), cwd=tmp_path)
    assert again.returncode != 0
    assert f"error: {target} exists; expected a new config name: choose another --name" in again.stderr
    assert "Traceback" not in again.stderr
    assert target.read_bytes() == before

    escaping = run_cli(
        *storage, "export", STUDY, "--name", "../escaped", "--dir", str(params_dir), cwd=tmp_path
    )
    onto_file = run_cli(*storage, "export", STUDY, "--name", "other", "--dir", str(target), cwd=tmp_path)
    assert escaping.returncode != 0 and onto_file.returncode != 0
    assert "error: config name '../escaped' cannot be selected with params=<name>" in escaping.stderr
    assert f"error: --dir {target} is a file; expected a directory" in onto_file.stderr
    assert "Traceback" not in escaping.stderr + onto_file.stderr
    assert sorted(p.name for p in tmp_path.rglob("*.yaml") if "elsewhere" in p.parts) == ["best_x.yaml"]

    missing = run_cli(*storage, "show", "nope", cwd=tmp_path)
    assert missing.returncode != 0
    assert f"no study 'nope' in {sqlite_url(tmp_path)}; studies present: {STUDY}" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_storage_password_is_masked_in_cli_errors(tmp_path: Path) -> None:
    result = run_cli_process(
        "--storage", "postgresql+psycopg://u:s3cret@127.0.0.1:1/db", "list", cwd=tmp_path
    )

    assert result.returncode != 0
    assert "error: cannot open storage postgresql+psycopg://u:***@127.0.0.1:1/db" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_raw_at_sign_in_a_password_is_refused_unprinted(tmp_path: Path) -> None:
    result = run_cli_process(
        "--storage", "postgresql+psycopg://u:s3@cret@127.0.0.1:1/db", "list", cwd=tmp_path
    )

    assert result.returncode != 0
    assert (
        "error: storage postgresql+psycopg://u:***@127.0.0.1:1/db has more than one @ before its host"
        in result.stderr
    )
    assert "cret" not in result.stdout + result.stderr


def test_a_study_of_several_objectives_is_shown_and_refused_where_one_best_is_needed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    study = optuna.create_study(study_name="two-goals", storage=url, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[0.9, 1.0]))
    shown = run_cli("--storage", url, "show", "two-goals", cwd=tmp_path)
    best_of = run_main([*offline_args(tmp_path), "best_of=two-goals", f"storage={url}"], tmp_path)
    swept = run_main(sweep_args(tmp_path, "hydra.sweeper.study_name=two-goals", n_trials=1), tmp_path)

    assert shown.returncode == 0 and "best: trial   0 COMPLETE value=0.9000 1.0000" in shown.stdout
    assert best_of.returncode != 0 and "study 'two-goals' in sqlite:///" in best_of.stderr
    assert "has 2 objectives, so no single best trial" in best_of.stderr
    assert swept.returncode != 0
    assert "direction=maximize, but study 'two-goals' in sqlite:///" in swept.stderr
    assert "was created to ['maximize', 'minimize']" in swept.stderr
    assert "Traceback" not in best_of.stderr + swept.stderr
    assert len(optuna.load_study(study_name="two-goals", storage=url).trials) == 1


def test_reading_a_missing_sqlite_file_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "typo.db"
    listed = run_cli("--storage", f"sqlite:///{missing}", "list", cwd=tmp_path)
    best_of = run_main([*offline_args(tmp_path), "best_of=x", f"storage=sqlite:///{missing}"], tmp_path)

    for result in (listed, best_of):
        assert result.returncode != 0
        assert f"there is no SQLite file {missing}" in result.stderr
    assert not missing.parent.exists()


def test_export_names_what_a_params_config_cannot_hold(tmp_path: Path) -> None:
    swept = run_sweep(
        tmp_path, "params=default", "model.hidden=choice(16, 32)", "params.epoch_count=1", n_trials=2
    )
    assert swept.returncode == 0, swept.stderr
    study = "linearnet-default-mnist-sample"  # named after the params config it fixes
    hidden = load(tmp_path, study).best_trial.params["model.hidden"]
    export = [
        "--storage",
        sqlite_url(tmp_path),
        "export",
        study,
        "--name",
        "bx",
        "--dir",
        str(tmp_path / "p"),
    ]

    ambiguous = run_cli(*export, cwd=tmp_path)
    exported = run_cli(*export, "--group", "params", cwd=tmp_path)

    assert ambiguous.returncode != 0 and "share no config group; expected --group NAME" in ambiguous.stderr
    assert exported.returncode == 0, exported.stderr
    assert f"select it with params=bx model.hidden={hidden}" in exported.stdout
    assert "params=default" not in exported.stdout


def test_export_of_another_app_s_study_writes_its_group(tmp_path: Path) -> None:
    """A study this app never made: the keys' common group is exported, the task's record preferred."""
    study = optuna.create_study(study_name="other-app", storage=sqlite_url(tmp_path))
    trial = study.ask({"opt.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    trial.set_user_attr(FIXED_PARAMS_ATTR, {"opt.momentum": "0.9"})
    trial.set_user_attr(CONFIG_ATTR, {"opt": {"lr": 0.5, "momentum": 0.0, "nesterov": True}})
    study.tell(trial, 0.1)

    exported = run_cli(
        "--storage", sqlite_url(tmp_path), "export", "other-app", "--dir", str(tmp_path / "opt"), cwd=tmp_path
    )

    assert exported.returncode == 0, exported.stderr
    written = OmegaConf.to_container(OmegaConf.load(tmp_path / "opt" / "best_other_app.yaml"))
    assert written == {"lr": trial.params["opt.lr"], "momentum": 0.9, "nesterov": True}
