"""optuna-dashboard on a study storage, started before or with the first sweep (`make dashboard`).

    python -m pruning_optuna_sweeper.dashboard [STORAGE_URL] [--host 127.0.0.1] [--port 8080]
        [--artifact-dir DIR]

optuna-dashboard only reads a storage: on a database no sweep has written yet
it dies with "no such table: version_info". This creates Optuna's empty
schema first, the way a sweep opens its storage (pruning_optuna_sweeper.storage.open_storage:
SQLite's folder made, write-ahead logging on, and retried while another
process, such as a sweep started at the same time, creates the same tables),
then serves it with optuna-dashboard's own `run_server`, in this process: the
URL, which may hold a password, is never put on a command line that `ps`
shows. The trials' artifacts (their models) are served from the sweeper's
default store beside a SQLite study, or --artifact-dir. The storage is
STORAGE_URL, else $SWEEP_STORAGE, else sqlite:///studies/optuna.db.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from pathlib import Path

from pruning_optuna_sweeper.extras import install_command, missing
from pruning_optuna_sweeper.storage import StorageError, default_storage, mask_url, open_storage
from pruning_optuna_sweeper.trial import artifact_folder


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pruning_optuna_sweeper.dashboard", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "storage", nargs="?", default=None, help="study storage URL (default: $SWEEP_STORAGE)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--artifact-dir", default=None, help="the trials' files (default: beside a SQLite study)"
    )
    parser.add_argument(
        "--server", default="wsgiref", choices=["wsgiref"], help="optuna-dashboard's own server"
    )
    args = parser.parse_args(argv)
    if missing("dashboard"):
        sys.exit(
            "error: optuna-dashboard is not installed in this environment; expected it installed: "
            f"{install_command('dashboard')}"
        )
    problem = address_problem(args.host, args.port)
    if problem is not None:
        sys.exit(f"error: {problem}")
    url = args.storage or default_storage()
    try:
        storage = open_storage(url)
    except StorageError as error:
        sys.exit(f"error: {error}")
    import optuna
    from optuna_dashboard import run_server

    folder = args.artifact_dir or artifact_folder(url)
    store = None
    if folder is not None:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            sys.exit(
                f"error: --artifact-dir {folder}: cannot be made a folder ({error.strerror}); "
                "expected a folder, or a path where one can be made"
            )
        store = optuna.artifacts.FileSystemArtifactStore(str(folder))
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {mask_url(url)}", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port, artifact_store=store)
    except OSError as error:  # taken between the check and the start
        sys.exit(f"error: cannot serve on {args.host}:{args.port} ({error.strerror}); expected a free port")


def address_problem(host: str, port: int) -> str | None:
    """Why the dashboard cannot listen on host:port (out of range, unknown host, in use), or None;
    checked before the storage is opened."""
    if not 1 <= port <= 65535:
        return f"--port {port}: expected a port number from 1 to 65535"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        return (
            f"--host {host!r}: not a host name or address this machine knows ({error}); expected "
            "e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        )
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as error:
            taken = "in use by another program" if error.errno == errno.EADDRINUSE else error.strerror
            return f"--port {port} on {host}: {taken}; expected a free port (say --port {port + 1})"
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
