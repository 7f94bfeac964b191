"""`pruning-optuna-sweeper serve`: one study storage for many workers, and a dashboard on it.

    pruning-optuna-sweeper serve --storage URL --port N [--dashboard-port M] [--host ADDRESS]

Runs Optuna's gRPC storage proxy (`optuna.storages.run_grpc_proxy_server`) in
front of any storage (a journal file, SQLite, PostgreSQL), and optuna-dashboard
on the same storage beside it, in this one process. Workers use
`storage=grpc://HOST:N`. Both bind 127.0.0.1 unless `--host` names another
interface: the proxy has no authentication, so other machines should reach it
through an SSH tunnel or a private network (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import signal
import socket
import threading
import warnings

import optuna

from pruning_optuna_sweeper.proxy import INSTALL_HINT, is_grpc_url
from pruning_optuna_sweeper.storage import StorageError, mask_url, open_storage
from pruning_optuna_sweeper.trial import artifact_folder

LOOPBACK = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 8080


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--port", type=int, default=13000, help="the gRPC port (default: %(default)s)")
    command.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        help=f"optuna-dashboard's port (default: {DEFAULT_DASHBOARD_PORT}, or none where it is in use)",
    )
    command.add_argument("--no-dashboard", action="store_true", help="serve the storage only")
    command.add_argument(
        "--host",
        default=LOOPBACK,
        help="the interface to bind (default: %(default)s, this machine only); another one opens the "
        "unauthenticated proxy to that network",
    )


def serve(url: str, host: str, port: int, dashboard_port: int | None, *, dashboard: bool = True) -> None:
    """Serve `url` on host:port, and the dashboard on host:dashboard_port, until interrupted.

    The dashboard's default port, when in use, only leaves the dashboard out: the sweep server
    is what workers need. A port given and in use is an error."""
    if is_grpc_url(url):
        raise StorageError(
            f"--storage {url} is itself a sweep server; expected the storage to serve "
            "(journal:///..., sqlite:///..., postgresql+psycopg://...)"
        )
    if importlib.util.find_spec("grpc") is None:
        raise StorageError(f"serve needs grpcio, which is not installed: {INSTALL_HINT}")
    try:
        from optuna.storages import run_grpc_proxy_server
    except ImportError:
        raise StorageError(
            f"serve needs Optuna's gRPC storage proxy, which Optuna {optuna.__version__} lacks; "
            "expected optuna>=4.2"
        ) from None
    if dashboard and importlib.util.find_spec("optuna_dashboard") is None:
        raise StorageError(f"serve's dashboard needs optuna-dashboard: {INSTALL_HINT}, or --no-dashboard")
    _check_free(host, port)
    if dashboard and dashboard_port is None:
        try:
            _check_free(host, DEFAULT_DASHBOARD_PORT)
            dashboard_port = DEFAULT_DASHBOARD_PORT
        except StorageError:
            print(
                f"warning: port {DEFAULT_DASHBOARD_PORT} is in use: no dashboard; expected "
                "--dashboard-port N for one",
                flush=True,
            )
    elif dashboard and dashboard_port is not None:
        _check_free(host, dashboard_port)
    else:
        dashboard_port = None
    storage = open_storage(url)
    where = mask_url(url)
    if dashboard_port is not None:
        _start_dashboard(storage, url, host, dashboard_port)
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:  # bound above: it resolves
        print(
            f"warning: serving on {host}: anyone who reaches this address may read and change the studies "
            "(the proxy has no authentication); expected a private network",
            flush=True,
        )
    print(f"sweep server on grpc://{host}:{port} for {where}; workers use storage=grpc://{host}:{port}")
    if dashboard_port is not None:
        print(f"optuna-dashboard on http://{host}:{dashboard_port}/", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill and Ctrl-C end it alike
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            run_grpc_proxy_server(storage, host=host, port=port)
    except KeyboardInterrupt:
        print("sweep server stopped", flush=True)


def _check_free(host: str, port: int) -> None:
    """Refuse a port that cannot be bound (in use, or out of range) before anything starts."""
    if not 0 < port < 65536:
        raise StorageError(f"port {port}: expected a TCP port from 1 to 65535")
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        raise StorageError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); expected a free port (--port, "
            "--dashboard-port) and an address of this machine (--host)"
        ) from None


def _start_dashboard(storage: object, url: str, host: str, port: int) -> None:
    from pathlib import Path

    from optuna_dashboard import run_server

    folder = artifact_folder(url)
    store = None
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        store = optuna.artifacts.FileSystemArtifactStore(str(folder))
    threading.Thread(
        target=run_server,
        args=(storage,),
        kwargs={"host": host, "port": port, "artifact_store": store},
        name="optuna-dashboard",
        daemon=True,
    ).start()
