"""One study for many sweep processes without a database server: a journal file (`journal://`) and a
sweep server (`python -m pruning_optuna_sweeper serve`, workers on `grpc://`).

The app is examples/descent, copied out of the repository and run on the installed distribution, as
an app written elsewhere would; two sweep processes share one exact `total_trials` budget.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from pruning_optuna_sweeper.serve import DEFAULT_DASHBOARD_PORT
from tests.cli import copy_example, free_port, run_cli, run_example
from tests.dashboard import HTTP, accepts_connections
from tests.sweep_helpers import wait_for

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
# Enough that the two processes' trials interleave; the bench part `shared` runs 200.
BUDGET = 30


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("app"))


def sweep_command(app: Path, storage: str, folder: str, n_trials: int = BUDGET) -> list[str]:
    return [
        sys.executable,
        "descent.py",
        "-m",
        "hydra/sweeper=pruning_optuna",
        "hydra/sweeper/sampler=random",
        "hydra/launcher=pool",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.total_trials={BUDGET}",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweep.dir={app / 'multirun' / folder}",
        "steps=3",
        "lr=tag(log, interval(1e-5, 1e-2))",
    ]


def two_sweeps(app: Path, storage: str, name: str) -> list[subprocess.CompletedProcess[str]]:
    """Two sweep processes started together on one study, each asked for the whole budget."""
    processes = [
        subprocess.Popen(
            sweep_command(app, storage, f"{name}-{i}"),
            cwd=app,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    for p in processes:
        out, err = p.communicate(timeout=240)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def check_exact_budget(study: optuna.Study, results: list[subprocess.CompletedProcess[str]]) -> None:
    logs = "\n".join((r.stdout + r.stderr)[-3000:] for r in results)
    assert [r.returncode for r in results] == [0, 0], logs
    trials = study.get_trials()
    assert len([t for t in trials if t.state in COUNTED]) == BUDGET, logs
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], logs
    assert sorted(t.number for t in trials) == list(range(len(trials))), logs
    # Both processes ran trials of the budget: the study was shared, not run twice.
    launched = [int(re.findall(r"launched (\d+) trial", r.stdout + r.stderr)[0]) for r in results]
    assert all(n > 0 for n in launched) and sum(launched) >= BUDGET, logs


def test_two_sweeps_on_one_journal_file_fill_the_budget_exactly(app: Path, tmp_path: Path) -> None:
    journal = tmp_path / "shared" / "optuna.log"
    results = two_sweeps(app, f"journal:///{journal}", "journal")
    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal))))
    check_exact_budget(study, results)
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert pruned and all(t.intermediate_values for t in pruned)  # pruned on what they reported
    # The CLI reads the same journal.
    listed = run_cli("list", "--storage", f"journal:///{journal}", cwd=tmp_path)
    assert listed.returncode == 0 and "shared:" in listed.stdout and "PRUNED" in listed.stdout, listed


@contextmanager
def sweep_server(storage: str, cwd: Path) -> Iterator[tuple[int, int, subprocess.Popen[str]]]:
    """`python -m pruning_optuna_sweeper serve` on two free ports, stopped (SIGTERM) afterwards."""
    port, dashboard_port = free_port(), free_port()
    log = (cwd / f"serve-{port}.log").open("w+")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pruning_optuna_sweeper",
            "serve",
            "--storage",
            storage,
            "--port",
            str(port),
            "--dashboard-port",
            str(dashboard_port),
        ],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: all(accepts_connections(p) for p in (port, dashboard_port)) or server.poll() is not None,
            30,
            "the sweep server and its dashboard to listen",
        )
        assert server.poll() is None, Path(log.name).read_text()
        yield port, dashboard_port, server
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_two_sweeps_through_a_sweep_server_fill_the_budget_exactly(app: Path, tmp_path: Path) -> None:
    journal = tmp_path / "served" / "optuna.log"
    with sweep_server(f"journal:///{journal}", tmp_path) as (port, dashboard_port, server):
        # By default both listen on 127.0.0.1 only.
        assert listening_addresses(port) == listening_addresses(dashboard_port) == {"127.0.0.1"}
        results = two_sweeps(app, f"grpc://127.0.0.1:{port}", "grpc")
        # The dashboard beside it serves the same study.
        with HTTP.open(f"http://127.0.0.1:{dashboard_port}/api/studies", timeout=10) as response:
            studies = json.loads(response.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["shared"]
        # The CLI and best_of reach the study through the server too.
        trials = run_cli("trials", "shared", "--storage", f"grpc://127.0.0.1:{port}", cwd=tmp_path)
        assert trials.returncode == 0 and "PRUNED" in trials.stdout, trials
        best = run_example(app, "-c", BEST_OF.format(url=f"grpc://127.0.0.1:{port}"))
        assert best.returncode == 0, best.stderr
    assert server.returncode == 0  # SIGTERM stops it as Ctrl-C does
    # What the proxy lacks is said once by each sweep.
    assert all((r.stdout + r.stderr).count("carries no heartbeats") == 1 for r in results)
    # Everything went into the served journal, read here without the server.
    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal))))
    check_exact_budget(study, results)
    assert f"best trial {study.best_trial.number}" in best.stdout, best.stdout


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port` (the kernel's /proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(str(kernel_address(address)))
    return found


def kernel_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp* writes it (32-bit words in host order, little-endian here); an
    IPv6 socket bound to an IPv4 address (gRPC's) as that IPv4 address."""
    raw = b"".join(bytes.fromhex(text[i : i + 8])[::-1] for i in range(0, len(text), 8))
    address = ipaddress.ip_address(raw)
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def test_serve_without_its_default_dashboard_port_still_serves_the_storage(tmp_path: Path) -> None:
    """The dashboard's default port (8080) taken: a warning, and the gRPC proxy serves all the same."""
    with socket.socket() as holder:
        with contextlib.suppress(OSError):  # else something else holds it already
            holder.bind(("127.0.0.1", DEFAULT_DASHBOARD_PORT))
            holder.listen()
        port = free_port()
        log = tmp_path / "serve.log"
        command = [sys.executable, "-m", "pruning_optuna_sweeper", "serve"]
        command += ["--storage", f"journal:///{tmp_path / 'optuna.log'}", "--port", str(port)]
        with log.open("w") as out:
            server = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: accepts_connections(port) or server.poll() is not None, 30, "serve to listen")
            assert server.poll() is None, log.read_text()
            assert f"warning: port {DEFAULT_DASHBOARD_PORT} is in use: no dashboard" in log.read_text()
            listed = run_cli("list", "--storage", f"grpc://127.0.0.1:{port}", cwd=tmp_path)
            assert listed.returncode == 0 and "no studies in grpc://" in listed.stdout, listed
        finally:
            server.terminate()
            server.wait(timeout=30)


# A task-side call of the task API's best_of, as an app would make it after a sweep.
BEST_OF = (
    "from pruning_optuna_sweeper.best_of import load_best\n"
    "study, _, trial = load_best('shared', '{url}')\n"
    "print(f'best trial {{trial.number}} value {{trial.value}}')\n"
)


def test_serve_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    sqlite = tmp_path / "study.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{sqlite}")
    taken = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        busy.listen()
        result = run_cli("serve", "--storage", f"sqlite:///{sqlite}", "--port", str(taken), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{taken} "), result.stderr
    served = run_cli("serve", "--storage", "grpc://127.0.0.1:1", "--port", str(free_port()), cwd=tmp_path)
    assert served.returncode == 1 and "is itself a sweep server" in served.stderr, served.stderr
    nobody = run_cli("trials", "s", "--storage", f"grpc://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert nobody.returncode == 1 and "no sweep server answers at 127.0.0.1:" in nobody.stderr, nobody.stderr
    malformed = run_cli("list", "--storage", "grpc://127.0.0.1", cwd=tmp_path)
    assert malformed.returncode == 1 and "expected grpc://HOST:PORT" in malformed.stderr, malformed.stderr
