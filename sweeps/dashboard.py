"""optuna-dashboard on a study storage, started before or with the first sweep (`make dashboard`).

    python -m sweeps.dashboard [STORAGE_URL] [optuna-dashboard options, e.g. --port 8081]

optuna-dashboard only reads a storage: on a database no sweep has written yet
it dies with "no such table: version_info". This creates Optuna's empty
schema first, the way a sweep opens its storage (sweeps.storage.open_storage:
SQLite's folder made, write-ahead logging on, and retried while another
process, such as a sweep started at the same time, creates the same tables),
then becomes optuna-dashboard (exec: same process, its signals and exit status),
serving the trials' artifacts (their models) from the sweeper's default artifact
store beside a SQLite study. The storage is STORAGE_URL, else $SWEEP_STORAGE,
else sqlite:///sweeps/optuna.db.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sweeps.storage import StorageError, default_storage, open_storage
from sweeps.trial import artifact_folder


def main(argv: list[str]) -> None:
    url, options = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else (default_storage(), argv)
    try:
        open_storage(url)
    except StorageError as error:
        sys.exit(f"error: {error}")
    artifacts = artifact_folder(url)
    if artifacts is not None and "--artifact-dir" not in options:
        artifacts.mkdir(parents=True, exist_ok=True)
        options = ["--artifact-dir", str(artifacts), *options]
    dashboard = str(Path(sys.executable).parent / "optuna-dashboard")
    os.execv(dashboard, [dashboard, url, *options])


if __name__ == "__main__":
    main(sys.argv[1:])
