"""What a stopped sweep does so that nothing is left behind: the worker processes it started
ended, and a SQLite study's write-ahead log checkpointed when the disk is full."""

from __future__ import annotations

import contextlib
import os
import signal

from optuna.storages import BaseStorage


def stop_child_processes() -> None:
    """End the worker processes this sweep started (the pool's or joblib's): their trials are closed."""
    children = set()
    for task in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                children.update(int(pid) for pid in f.read().split())
        except OSError:
            continue
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


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
