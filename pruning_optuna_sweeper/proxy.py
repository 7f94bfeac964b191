"""`grpc://host:port`: a study behind a sweep server (`pruning-optuna-sweeper serve`).

Workers reach the server's storage through Optuna's GrpcStorageProxy, so a
cluster needs neither a database server nor a shared file. The proxy has no
authentication or encryption: reach it through an SSH tunnel or a private
network (docs/scaling.md). grpcio is the distribution's extra `serve`.
"""

from __future__ import annotations

import importlib.util
import socket
import warnings
from urllib.parse import urlsplit

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage

SCHEME = "grpc://"
# How long a worker waits for the server to answer before giving up with an error.
CONNECT_TIMEOUT_S = 10
INSTALL_HINT = "pip install 'pruning-optuna-sweeper[serve]'"


class ProxyError(ValueError):
    """A grpc:// URL that cannot be used: malformed, no server there, or grpcio missing."""


def is_grpc_url(url: str | None) -> bool:
    return url is not None and url.startswith(SCHEME)


def shown(url: str) -> str:
    """`url` without any user or password in it, for messages."""
    netloc = urlsplit(url).netloc
    return url.replace(netloc, "***@" + netloc.rsplit("@", 1)[1], 1) if "@" in netloc else url


def grpc_address(url: str) -> tuple[str, int]:
    """(host, port) of `grpc://host:port`; a ProxyError names what is wrong."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query or parts.username:
        raise ProxyError(
            f"storage {shown(url)!r} is not a sweep server's address; expected grpc://HOST:PORT, "
            "e.g. grpc://127.0.0.1:13000 (what `pruning-optuna-sweeper serve --port 13000` serves)"
        )
    return parts.hostname, port


def check_reachable(url: str) -> None:
    """Refuse a grpc:// URL that nothing answers, with a plain TCP connection: no gRPC channel is
    opened here, since a sweep forks its workers after this check."""
    host, port = grpc_address(url)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise ProxyError(
            f"storage {shown(url)}: no sweep server answers at {host}:{port} ({e.strerror or e}); expected "
            f"`pruning-optuna-sweeper serve --storage URL --port {port}` running there (through an SSH "
            "tunnel from another machine)"
        ) from None


def open_proxy(url: str) -> BaseStorage:
    """Optuna's GrpcStorageProxy for `url`, once its server answers."""
    host, port = grpc_address(url)
    if importlib.util.find_spec("grpc") is None:  # Optuna's proxy needs it: said in our words
        raise ProxyError(f"storage {shown(url)} needs grpcio, which is not installed: {INSTALL_HINT}")
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError:
        import optuna

        raise ProxyError(
            f"storage {shown(url)} needs Optuna's gRPC storage proxy, which Optuna {optuna.__version__} "
            "lacks; expected optuna>=4.2"
        ) from None

    check_reachable(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # used on purpose, as the docs say
        proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT_S)
    except ConnectionError:
        raise ProxyError(
            f"storage {shown(url)}: {host}:{port} accepts connections but no gRPC storage proxy answered in "
            f"{CONNECT_TIMEOUT_S} s; expected `pruning-optuna-sweeper serve` on that port"
        ) from None
    return proxy
