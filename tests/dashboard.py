"""A real optuna-dashboard process on 127.0.0.1, started for a test and stopped after it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.cli import ROOT, free_port, main_env
from tests.sweep_helpers import wait_for

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"
# The distribution's starter (pruning_optuna_sweeper/dashboard.py): the study's tables first,
# its artifact store served.
SWEEPS_DASHBOARD = (sys.executable, "-m", "pruning_optuna_sweeper.dashboard")
# Talk to 127.0.0.1 directly, whatever http_proxy the environment sets.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Dashboard:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def get_bytes(self, route: str) -> bytes:
        """The body served at `route` (HTTP 200 only)."""
        with HTTP.open(f"http://127.0.0.1:{self.port}{route}", timeout=10) as response:
            assert response.status == 200
            return response.read()

    def get(self, route: str) -> Any:
        return json.loads(self.get_bytes(route))

    def try_get(self, route: str) -> Any | None:
        """The JSON at `route`, or None while the server is not (yet) answering it."""
        if self.process.poll() is not None:
            raise AssertionError(
                f"optuna-dashboard exited with {self.process.returncode}:\n{self.log.read_text()}"
            )
        try:
            return self.get(route)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None  # not listening yet, or HTTP 500 while the sweep creates the tables

    def study_id(self, name: str) -> int | None:
        studies = self.try_get("/api/studies")
        matches = [
            s["study_id"] for s in (studies or {}).get("study_summaries", []) if s["study_name"] == name
        ]
        return matches[0] if matches else None


def start_dashboard(storage_url: str, workdir: Path, command: Sequence[str] = (str(DASHBOARD),)) -> Dashboard:
    """`optuna-dashboard <url>` (or `command <url>`) on a free 127.0.0.1 port, once its API answers.

    Another port if the one picked was taken in the meantime.
    """
    for _ in range(3):
        port = free_port()
        log = workdir / f"dashboard-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, storage_url, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref"],
                cwd=workdir,
                env=main_env(PYTHONPATH=str(ROOT)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Dashboard(process, port, log)

        def answering_or_exited(server: Dashboard = server) -> bool:
            try:
                return server.try_get("/api/meta") is not None
            except AssertionError:  # exited
                return True

        try:
            wait_for(answering_or_exited, timeout=30, what=f"optuna-dashboard's API on port {port}")
        except BaseException:
            stop(server)
            raise
        if process.poll() is None:
            return server
        if "Address already in use" not in log.read_text():
            raise AssertionError(f"optuna-dashboard exited with {process.returncode}:\n{log.read_text()}")
    raise AssertionError("no free port for optuna-dashboard after 3 tries")


def stop(server: Dashboard) -> None:
    """End the dashboard process and check that nothing listens on its port any more."""
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
    wait_for(
        lambda: not accepts_connections(server.port), timeout=10, what=f"port {server.port} to be released"
    )


@contextmanager
def dashboard(
    storage_url: str, workdir: Path, command: Sequence[str] = (str(DASHBOARD),)
) -> Iterator[Dashboard]:
    """A running dashboard; stopped, and its port closed, afterwards."""
    server = start_dashboard(storage_url, workdir, command)
    try:
        yield server
    finally:
        stop(server)
