"""Heartbeats for asked trials: one thread per process beating for every trial id it holds.

Optuna records heartbeats only inside `study.optimize`; with ask-and-tell the
sweep beats for its own trials through the storage's public
`record_heartbeat`, and so does a job its sweep cannot see end (job.py). When
the process dies the beats stop: another worker's `fail_stale_trials` fails
the trials and Optuna's retry callback queues them again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from optuna.storages import BaseStorage

log = logging.getLogger(__name__)


class Heartbeats:
    """Beats once per the storage's heartbeat interval for every trial id added, from the first
    `add` until `stop` (or the process's end: the thread is a daemon)."""

    def __init__(self, storage: BaseStorage) -> None:
        # Optuna's storages that keep heartbeats (not the in-memory one) have both methods.
        self.interval: int | None = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self._record: Callable[[int], object] = getattr(storage, "record_heartbeat", lambda trial_id: None)
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        """Beat for `trial_id` from now on, starting with one beat at once."""
        if not self.interval:
            return
        self._record(trial_id)
        with self._lock:
            self.trial_ids.add(trial_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):  # started by `add`: an interval is set
            with self._lock:
                trial_ids = list(self.trial_ids)
            try:
                for trial_id in trial_ids:  # a beat for a finished trial is ignored by Optuna
                    self._record(trial_id)
            except Exception as error:  # a lost beat is retried; a dead thread would fail the trials
                log.warning("could not record a heartbeat (%s); retrying", type(error).__name__)
