"""Ctrl-C, then the same command again: the rerun launches only what the interrupted sweep had left
(its interrupted trial first), and says the exact command that does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.cli import MAIN, main_env, run_main
from tests.sweep_helpers import load, retry_of, sqlite_url, sweep_args, wait_for

# Each test runs a sweep in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, which a test run started in the background without job control has ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_rerun_of_an_interrupted_sweep_launches_only_the_trials_it_had_left(tmp_path: Path) -> None:
    args = sweep_args(tmp_path, "params.epoch_count=10", "params.batch_size=32", "hydra/sweeper/pruner=none")
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

        def second_trial_running() -> bool:
            try:
                trials = load(tmp_path).get_trials()
            except KeyError:
                return False
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            return len(done) == 1 and any(1 <= max(t.intermediate_values, default=0) <= 7 for t in running)

        wait_for(second_trial_running, timeout=120, what="trial 1 running after trial 0 completed")
        sweep.send_signal(signal.SIGINT)
        stdout, stderr = sweep.communicate(timeout=60)
    finally:
        sweep.kill()
        sweep.wait(timeout=10)
    assert sweep.returncode == 128 + signal.SIGINT and "Traceback" not in stderr
    assert "To launch its 2 trials left (the interrupted ones first), rerun: " in stdout + stderr
    assert " ".join(args) in stdout + stderr  # the exact command

    rerun = run_main(args, tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert "Resuming this command's interrupted sweep: 2 of its 3 trials left" in rerun.stdout + rerun.stderr
    assert "launched 2 trials" in rerun.stdout + rerun.stderr
    study = load(tmp_path)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    assert retry_of(trials[2]) == 1  # the interrupted trial, run first
    assert not [v for k, v in study.user_attrs.items() if k.startswith("interrupted_sweep:") and v]


def test_ctrl_c_while_a_sweep_starts_ends_it_without_a_traceback_or_a_running_trial(tmp_path: Path) -> None:
    sweep = subprocess.Popen(
        [sys.executable, str(MAIN), *sweep_args(tmp_path, parallel=True)],
        cwd=tmp_path,
        env=main_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )
    try:
        assert sweep.stdout is not None
        lines = []
        for line in sweep.stdout:  # the sweep's first line: its workers start, no trial yet
            lines.append(line)
            if "Sweeping 3 trials" in line:
                sweep.send_signal(signal.SIGINT)
                break
        output = "".join(lines) + sweep.communicate(timeout=60)[0]
    finally:
        sweep.kill()
        sweep.wait(timeout=10)
    assert sweep.returncode == 128 + signal.SIGINT, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    url = sqlite_url(tmp_path)
    for name in optuna.get_all_study_names(url) if (tmp_path / "study.db").exists() else []:
        trials = optuna.load_study(study_name=name, storage=url).get_trials()
        assert TrialState.RUNNING not in [t.state for t in trials]
