"""A real PostgreSQL server on 127.0.0.1 for the test session.

`postgres_url` starts a throwaway cluster (initdb into a temporary directory,
`pg_ctl start` on a free port, password authentication over TCP) once per
session and yields a SQLAlchemy URL with a random password, so that tests
also prove the password is never printed. `fresh_postgres_url` gives each
test its own database on that server.

The server binaries come from /usr/lib/postgresql/*/bin (Debian's layout,
not on PATH). Where they are absent the tests skip, unless REQUIRE_POSTGRES=1
(CI sets it and installs the packages): then they fail. initdb and pg_ctl
refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "sweeper"
DATABASE = "sweeps"
COMMAND_TIMEOUT_S = 60
START_TIMEOUT_S = 30
START_ATTEMPTS = 3


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        return (
            f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{database or self.database}"
        )

    def connect(self, database: str | None = None):
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            autocommit=True,
            connect_timeout=10,
        )


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, pg_ctl and pg_isready."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = [
        Path(p)
        for p in sorted(map(str, Path("/").glob(BIN_GLOB.lstrip("/"))))
        if all((Path(p) / tool).is_file() for tool in ("initdb", "pg_ctl", "pg_isready"))
    ]
    return max(candidates, key=version) if candidates else None


class _Cluster:
    """initdb / pg_ctl on a temporary directory, as `postgres` when we are root."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError:
                _unavailable(
                    "running as root and there is no 'postgres' user to run the PostgreSQL server as"
                )
            if shutil.which("runuser") is None:
                _unavailable("running as root and runuser is not installed to run the server as 'postgres'")
        self.root = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.sockets.mkdir()
        if self.as_root:
            for path in (self.root, self.sockets):
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        self.started = False

    def run(
        self, tool: str, *args: str, timeout: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{what} failed with exit code {result.returncode}:\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def initdb(self, user: str, password: str) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self.as_root:
            os.chown(pwfile, self.owner.pw_uid, self.owner.pw_gid)
        try:
            result = self.run(
                "initdb",
                "-D", str(self.data),
                "-U", user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
        finally:
            pwfile.unlink()
        self._check(result, "initdb")

    def start(self) -> int:
        """Start on a free port (another one if that port was taken meanwhile); return the port."""
        for attempt in itertools.count(1):
            port = free_port()
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -k {self.sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            result = self.run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                "-w", "-t", str(START_TIMEOUT_S), "start", timeout=START_TIMEOUT_S + 30,
            )  # fmt: skip
            if result.returncode == 0:
                self.started = True
                self._wait_ready(port)
                return port
            if attempt >= START_ATTEMPTS:
                self._check(result, f"pg_ctl start (port {port})")
            self.stop()
        raise AssertionError("unreachable")

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ready = self.run("pg_isready", "-h", "127.0.0.1", "-p", str(port), "-t", "5", timeout=30)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                self._check(ready, f"pg_isready on 127.0.0.1:{port}")
            time.sleep(0.2)

    def stop(self) -> None:
        if not self.data.is_dir():
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", timeout=60)
        self._kill_leftover()
        self.started = False

    def _kill_leftover(self) -> None:
        """If the postmaster still runs (stop timed out), end it by the pid it wrote."""
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(
            f"no PostgreSQL server binaries (initdb, pg_ctl, pg_isready) in {BIN_GLOB}; "
            "install them with: apt-get install postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg (3) is not installed in this Python environment")

    cluster = _Cluster(bin_dir)
    try:
        password = "pw-" + secrets.token_hex(12)
        cluster.initdb(SUPERUSER, password)
        port = cluster.start()
        server = PostgresServer("127.0.0.1", port, SUPERUSER, password, DATABASE)
        with server.connect("postgres") as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        yield server
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """postgresql+psycopg://sweeper:<random password>@127.0.0.1:<port>/sweeps"""
    return postgres_server.url()


_databases = itertools.count(1)


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """A database of its own for one test, on the session's server."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    with postgres_server.connect("postgres") as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.url(name)
