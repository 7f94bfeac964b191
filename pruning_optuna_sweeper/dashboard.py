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
        Path(folder).mkdir(parents=True, exist_ok=True)
        store = optuna.artifacts.FileSystemArtifactStore(str(folder))
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {mask_url(url)}", flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)


if __name__ == "__main__":
    main(sys.argv[1:])
