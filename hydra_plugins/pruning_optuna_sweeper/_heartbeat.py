"""Heartbeats for the trials a sweep process is running.

Optuna records heartbeats only inside `study.optimize`; with ask-and-tell the
sweeper beats for its own running trials, so that when this process dies
another worker's `fail_stale_trials` marks them FAIL and queues them again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import optuna
from optuna.storages import BaseStorage

log = logging.getLogger(__name__)


@contextmanager
def heartbeats(storage: BaseStorage, trials: Sequence[optuna.Trial]) -> Iterator[None]:
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                for trial in trials:
                    storage.record_heartbeat(trial._trial_id)
            except Exception as error:  # a lost beat is retried; a dead thread would fail the trials
                log.warning("could not record a heartbeat (%s: %s); retrying", type(error).__name__, error)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
