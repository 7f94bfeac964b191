"""Heartbeats for the trials a sweep process has in flight.

Optuna records heartbeats only inside `study.optimize`; with ask-and-tell the
sweeper beats for its own trials through the storage's public
`record_heartbeat`, so that when this process dies, another worker's
`fail_stale_trials` fails them and Optuna's retry callback queues them again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.storages import BaseStorage

from pruning_optuna_sweeper.storage import first_line, record_heartbeat

log = logging.getLogger(__name__)


class Heartbeats:
    """One thread beating for every trial id in `self.trial_ids` while `running()` lasts."""

    def __init__(self, storage: BaseStorage) -> None:
        self.storage = storage
        self.interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()

    def add(self, trial_id: int) -> None:
        """Beat for `trial_id` from now on, starting with one beat at once."""
        if self.interval:
            record_heartbeat(self.storage, trial_id)
        with self._lock:
            self.trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    @contextmanager
    def running(self) -> Iterator[Heartbeats]:
        if not self.interval:
            yield self
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.interval):
                with self._lock:
                    trial_ids = list(self.trial_ids)
                try:
                    for trial_id in trial_ids:
                        record_heartbeat(self.storage, trial_id)
                except Exception as error:  # a lost beat is retried; a dead thread would fail the trials
                    log.warning(
                        "could not record a heartbeat (%s: %s); retrying",
                        type(error).__name__,
                        first_line(error),
                    )

        thread = threading.Thread(target=beat, name="trial-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
