"""`make dashboard` before any sweep: python -m pruning_optuna_sweeper.dashboard, the command it runs,
on a storage not made yet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.cli import ROOT, free_port, main_env

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

# Talk to 127.0.0.1 directly, whatever http_proxy the environment sets.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def studies(port: int) -> list[dict] | None:
    """The dashboard's study list, or None while it does not answer yet."""
    try:
        with HTTP.open(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
            return json.load(response)["study_summaries"]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_the_dashboard_starts_on_a_storage_no_sweep_has_made(tmp_path: Path) -> None:
    database = tmp_path / "sweeps" / "optuna.db"  # neither the file nor its folder exists
    url = f"sqlite:///{database}"
    port = free_port()
    log = tmp_path / "dashboard.log"
    options = ["--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref"]
    with log.open("wb") as out:
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "pruning_optuna_sweeper.dashboard", url, *options],
            cwd=tmp_path, env=main_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (listed := studies(port)) is None:  # polled: the port answers once the server is up
            assert dashboard.poll() is None, (
                f"pruning_optuna_sweeper.dashboard exited with {dashboard.returncode}:\n{log.read_text()}"
            )
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert listed == []
        # A sweep's first study in the schema made beforehand: the running dashboard lists it.
        optuna.create_study(study_name="first", storage=url, direction="maximize")
        assert [s["study_name"] for s in studies(port) or []] == ["first"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)
    assert "no such table" not in log.read_text()


def test_a_storage_password_reaches_the_dashboard_through_the_environment_only(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """`make dashboard` with SWEEP_STORAGE: the URL is on no command line that `ps` shows,
    make's or Python's."""
    password = fresh_postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        # The Makefile's own recipe, with this Python and without its install step.
        make = ["make", "--no-print-directory", "-C", str(ROOT), "-o", "install", "-o", ".venv/.installed"]
        dashboard = subprocess.Popen(
            [*make, "dashboard", f"PY={sys.executable}", f"DASHBOARD_ARGS=--host 127.0.0.1 --port {port}"],
            cwd=tmp_path, env=main_env(SWEEP_STORAGE=fresh_postgres_url),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while studies(port) is None:  # polled: the port answers once the server is up
            assert dashboard.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        for process in [dashboard.pid, *children(dashboard.pid)]:  # make, and the Python it started
            assert password.encode() not in Path(f"/proc/{process}/cmdline").read_bytes()
        assert password not in log.read_text() and ":***@" in log.read_text()
    finally:
        os.killpg(dashboard.pid, signal.SIGTERM)
        dashboard.wait(timeout=10)


def children(pid: int) -> list[int]:
    """The processes `pid` started, and theirs."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *children(int(child))]
    return found
