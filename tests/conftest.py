from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ds.data import SAMPLE_DIR
from tests.cli import SHARED_MNIST

# A real PostgreSQL server for the tests that need one (tests/postgres.py).
from tests.postgres import fresh_postgres_url, postgres_server, postgres_url  # noqa: F401

# A real one-node SLURM cluster for the tests that need one (tests/slurm.py).
from tests.slurm import slurm_cluster  # noqa: F401

# The markers a test gets from the servers it needs (registered in pyproject.toml): `make test-fast`
# leaves them out, since each server takes seconds to start.
SERVICE_MARKERS = {"postgres_server": "postgres", "slurm_cluster": "slurm"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test that uses a real PostgreSQL server or SLURM cluster, through any fixture."""
    for item in items:
        for fixture, marker in SERVICE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled offline sample (data/sample/)."""
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def shared_mnist_dir() -> Path:
    """The full MNIST set from ../shared/data/mnist, read-only; skips where absent."""
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"full MNIST reference data not present at {SHARED_MNIST} (only in the dev/CI workspace)")
    return SHARED_MNIST


class MirrorServer:
    """A real HTTP server on 127.0.0.1 serving the sample's .gz files.

    The first path segment picks the behaviour, so each mode is a mirror base
    URL (`url(mode)`): "good" serves the file; "corrupt" a valid gzip of
    altered content; "badgzip" damaged gzip bytes; "truncated" promises the
    full Content-Length, sends half and closes; anything else answers 404.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                _, mode, name = self.path.split("/", 2)
                body = server.files.get(name)
                if body is None or mode not in ("good", "corrupt", "badgzip", "truncated"):
                    self.send_error(404)
                    return
                if mode == "corrupt":
                    content = bytearray(gzip.decompress(body))
                    content[-1] ^= 0xFF
                    body = gzip.compress(bytes(content), compresslevel=1, mtime=0)
                elif mode == "badgzip":
                    middle = len(body) // 2
                    body = body[:middle] + bytes(64) + body[middle + 64 :]
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll interval only makes shutdown() return sooner.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, mode: str) -> str:
        return f"{self.base_url}/{mode}/"

    def __enter__(self) -> MirrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def http_mirror(sample_dir: Path) -> Iterator[MirrorServer]:
    files = {p.name: p.read_bytes() for p in sample_dir.glob("*.gz")}
    with MirrorServer(files) as server:
        yield server


@pytest.fixture(scope="session")
def swept_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real sweep's folder, shared by the dashboard, report, TensorBoard and browser tests: a study with
    trials 0 and 1 COMPLETE (3 epochs, params.lr searched), 2 PRUNED after epoch 2, 3 FAIL (diverged
    in epoch 1); three commands, each pinning what makes its trials end so."""
    from optuna.trial import TrialState

    from tests.sweep_helpers import load, run_sweep

    workdir = tmp_path_factory.mktemp("swept")
    pruner = ["hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=2"]
    for lr, epochs, n in (("tag(log, interval(0.002, 0.005))", 3, 2), ("0.00001", 3, 1), ("1e30", 1, 1)):
        result = run_sweep(
            workdir,
            f"params.lr={lr}",
            "params.batch_size=64",
            f"params.epoch_count={epochs}",
            "hydra.sweeper.max_failure_rate=1.0",
            *pruner,
            n_trials=n,
        )
        assert result.returncode == 0, result.stderr
    states = [t.state for t in load(workdir).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    return workdir
