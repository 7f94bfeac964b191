"""What a person sees: a sweep's console (the default sweep's: tests/test_sweep.py), its progress
line on a terminal, `--help`, and a sweep killed outright whose trial the next one recovers at once."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.cli import MAIN, copy_of_the_project, main_env, run_main
from tests.sweep_helpers import load, run_sweep, sqlite_url, sweep_args, wait_for

TRIAL_LINE = re.compile(
    r"\] trial +(\d+) (COMPLETE|PRUNED|FAIL) .*\((\d+\.\d) s(, (\d+) steps?)?\) \| best: "
)


@pytest.mark.slow
def test_job_output_console_brings_the_trials_lines_back_and_basic_keeps_the_sweep_s_lines(
    tmp_path: Path,
) -> None:
    """With the basic launcher the trials run in the sweep's process and set up their logging there."""
    for name in ("quiet", "loud"):
        (tmp_path / name).mkdir()
    quiet = run_sweep(tmp_path / "quiet", "params.epoch_count=2", n_trials=2)
    loud = run_sweep(
        tmp_path / "loud", "params.epoch_count=2", "hydra.sweeper.job_output=console", n_trials=2
    )

    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert len(TRIAL_LINE.findall(quiet.stdout)) == 2 and "[Epoch:" not in quiet.stdout + quiet.stderr
    assert "Sweep done" in quiet.stdout and "Launching" not in quiet.stdout
    assert len(TRIAL_LINE.findall(loud.stdout)) == 2 and loud.stdout.count("[Epoch: 2/2]") == 2
    # Hydra's basic launcher's lines (the stock sweeper shows them) fold into the line per trial.
    loud_console = loud.stdout + loud.stderr
    assert "Launching" not in loud_console and "#0 :" not in loud_console, loud_console[-3000:]
    assert "PRUNING_OPTUNA_TRIAL" not in loud_console and "env_set" not in loud_console


@pytest.mark.slow
def test_on_a_terminal_a_live_line_counts_the_trials_and_is_cleared_at_the_end(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    # A terminal of 24 rows and 200 columns (openpty's has none: tqdm would draw nothing).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    sweep = subprocess.Popen(
        [sys.executable, str(MAIN), *sweep_args(tmp_path, "params.epoch_count=1", n_trials=3)],
        cwd=tmp_path,
        env=main_env(),
        stdout=terminal,
        stderr=subprocess.DEVNULL,
    )
    os.close(terminal)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the sweep has ended and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
        sweep.wait(timeout=120)
    assert sweep.returncode == 0, seen.decode(errors="replace")
    text = seen.decode()
    assert re.search(r"\r\[3/3 trials\] best: trial \d \d\.\d{4} \| elapsed \d+:\d\d \| left 00:00", text)
    assert re.search(r"\r\[1/3 trials\] best: .* \| left \d+:\d\d", text)
    # Each log line starts on a cleared line (blanked, back to its start); the last thing written
    # clears the live line.
    assert re.search(r"\r +\r\[[^\n\r]*\]\[HYDRA\] Sweep done", text)
    assert re.match(r"left 00:00\r +\r", text[text.rindex("left 00:00") :])


@pytest.mark.slow
def test_a_sweep_killed_outright_leaves_a_trial_the_next_sweep_recovers_at_once(tmp_path: Path) -> None:
    """Its heartbeat is younger than grace_period (30 s): the worker's process being gone says enough."""
    args = sweep_args(
        tmp_path, "params.epoch_count=10", "params.batch_size=32", "hydra/sweeper/pruner=none", n_trials=2
    )
    sweep = subprocess.Popen(
        [sys.executable, str(MAIN), *args],
        cwd=tmp_path,
        env=main_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def running() -> bool:
            try:
                return any(
                    t.state == TrialState.RUNNING and t.intermediate_values
                    for t in load(tmp_path).get_trials()
                )
            except KeyError:
                return False

        wait_for(running, timeout=120, what="a running trial")
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=10)
    [stranded] = load(tmp_path).get_trials(states=(TrialState.RUNNING,))

    resumed = run_sweep(tmp_path, "params.epoch_count=1", n_trials=1)

    assert resumed.returncode == 0, resumed.stderr
    assert f"trial {stranded.number} was RUNNING for a sweep process that has ended" in resumed.stdout
    after = load(tmp_path)
    assert after.get_trials()[stranded.number].state == TrialState.FAIL
    [retry] = [t for t in after.get_trials() if t.system_attrs.get("failed_trial") == stranded.number]
    assert retry.state == TrialState.COMPLETE and retry.params["params.lr"] == stranded.params["params.lr"]
    assert not after.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.slow
def test_help_says_what_the_app_does_its_commands_and_groups_without_internal_ones(tmp_path: Path) -> None:
    result = run_main(["--help"], tmp_path)

    assert result.returncode == 0, result.stderr
    for text in (
        "Train a model on MNIST",
        "-m hydra/sweeper=optuna",
        "best_of=<study>",
        "model: linearnet, mlp",
        "optimizer: adam, adamw, sgd",
        "params: default",
        "params.lr",
        "device",
        "storage",
    ):
        assert text in result.stdout, text
    assert (
        "schema" not in result.stdout and "_target_" not in result.stdout and "run_name" not in result.stdout
    )


@pytest.mark.slow
def test_a_config_option_a_user_made_in_the_checkout_changes_no_test(tmp_path: Path) -> None:
    """The tests run a copy of the app without the files git does not track: a checkout in which
    `python -m pruning_optuna_sweeper export` wrote conf/params/tuned.yaml tests as a fresh clone does."""
    checkout = tmp_path / "checkout"
    copy_of_the_project(checkout)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "add", "-A"], check=True)
    (checkout / "conf" / "params" / "tuned.yaml").write_text("lr: 0.01\nbatch_size: 64\nepoch_count: 3\n")
    assert "params: default, tuned" in run_main(["--help"], tmp_path, main=checkout / "main.py").stdout

    under_test = copy_of_the_project(tmp_path / "under-test", root=checkout)

    assert sorted(p.name for p in (under_test.parent / "conf" / "params").iterdir()) == ["default.yaml"]
    assert "params: default\n" in run_main(["--help"], tmp_path, main=under_test).stdout
    refused = run_main(
        sweep_args(tmp_path, "params=choice(default, no_such_option)", n_trials=1), tmp_path, main=under_test
    )
    assert "config group 'params' has the options default;" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_best_of_latest_is_the_study_whose_last_completed_trial_ended_last(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    for name in ("older", "newer"):
        study = optuna.create_study(study_name=name, storage=url, direction="maximize")
        study.enqueue_trial({"params.lr": 0.003 if name == "newer" else 0.03})
        study.optimize(lambda t: t.suggest_float("params.lr", 1e-4, 1e-1, log=True), n_trials=1)
    optuna.create_study(study_name="empty", storage=url)
    failing = optuna.create_study(study_name="failing", storage=url)
    failing.tell(failing.ask(), state=TrialState.FAIL)  # the last to end, but with nothing to reuse

    from pruning_optuna_sweeper.storage import open_storage
    from pruning_optuna_sweeper.study import load_study

    assert load_study("latest", open_storage(url), "here").study_name == "newer"
    ran = run_main(
        [
            "best_of=latest",
            f"storage={url}",
            "params.epoch_count=1",
            "paths.data=nowhere",
            "data.download=false",
        ],
        tmp_path,
    )
    assert "best_of=newer: trial 0" in ran.stdout + ran.stderr


class LoudHandler(logging.StreamHandler):
    """An app's own console handler, known only by its class (no `stream` key in the config)."""


def test_job_output_file_drops_every_console_handler_an_app_s_job_logging_names(caplog) -> None:
    """The overrides each job gets: console handlers judged by class, file handlers kept; a logger
    whose name an override cannot spell keeps its handlers, and the sweep says so."""
    from omegaconf import OmegaConf

    from hydra_plugins.pruning_optuna_sweeper._console import file_only_overrides

    job_logging = OmegaConf.create({
        "handlers": {
            "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
            "loud": {"class": f"{__name__}.LoudHandler"},
            "file": {"class": "logging.FileHandler", "filename": "job.log"},
        },
        "root": {"handlers": ["console", "file"]},
        "loggers": {
            "app": {"handlers": ["loud", "file"]},
            "quiet": {"handlers": ["file"]},
            "a.b": {"handlers": ["loud"]},
        },
    })  # fmt: skip

    assert file_only_overrides(job_logging) == [
        "hydra.job_logging.root.handlers=[file]",
        "hydra.job_logging.loggers.app.handlers=[file]",
    ]
    assert "hydra.job_logging.loggers.a.b keeps its console handlers" in caplog.text
