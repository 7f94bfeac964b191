"""What a stopped sweep does so that nothing is left behind: the worker processes it started
ended, and a SQLite study's write-ahead log checkpointed when the disk is full."""

from __future__ import annotations

import psutil
from optuna.storages import BaseStorage


def stop_child_processes() -> None:
    """End the worker processes this sweep started (the pool's or joblib's): their trials are closed.

    Every child of this process is sent SIGTERM, whichever launcher started it: joblib's workers
    are not known to this sweep otherwise."""
    for child in psutil.Process().children():
        try:
            child.terminate()
        except psutil.Error:  # ended meanwhile
            continue


def make_room(storage: BaseStorage) -> None:
    """After a failed write, give a SQLite study back the space its write-ahead log holds
    (a full disk): the log's pages are copied into the database and the log truncated,
    so that closing the trials in flight, a few small writes, can still succeed."""
    engine = getattr(storage, "engine", None)
    if engine is None or engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception:
        pass  # nothing more to try: the caller says which trials stay RUNNING
