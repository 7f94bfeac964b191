"""`journal:///<path>`: a study in a journal file (Optuna's JournalStorage on a JournalFileBackend).

A journal is an append-only log of operations that many processes, on many
machines, may share on a network filesystem where SQLite is unsafe. Its lock
is Optuna's JournalFileOpenLock (an O_EXCL lock file, safe on NFSv3 and
later). The path follows SQLite's URLs: `journal:///studies/optuna.log` is
relative, `journal:////shared/optuna.log` absolute.

Optuna's JournalStorage keeps no heartbeats, so a dead worker's trial would
stay RUNNING. `HeartbeatJournalStorage` records them the way RDBStorage does
for Optuna's own `fail_stale_trials` and `RetryHeartbeatStaleTrialCallback`:
a trial's last beat (wall-clock seconds) is a trial system attr.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from pruning_optuna_sweeper.compat import update_finished_trial_error

SCHEME = "journal://"
# The trial system attr holding a trial's last heartbeat, seconds since the epoch.
HEARTBEAT_ATTR = "pruning_optuna_sweeper:heartbeat"
# Optuna's own way for a storage to take part in heartbeats (fail_stale_trials checks for it). It lives
# in a private module; where a later Optuna moves it, journals work on without heartbeats.
try:
    from optuna.storages._heartbeat import BaseHeartbeat
except ImportError:  # tests/test_journal_heartbeats.py runs this fallback
    BaseHeartbeat = None  # type: ignore[assignment,misc]


class JournalFileError(ValueError):
    """A path that is not a journal file (another kind of file, or a folder)."""


def is_journal_url(url: str | None) -> bool:
    return url is not None and url.startswith(SCHEME)


def journal_path(url: str) -> Path:
    """The file a `journal:///<path>` URL names (relative unless <path> starts with /)."""
    return Path(url[len(SCHEME) :].removeprefix("/"))


def check_journal_file(path: Path, where: str, *, must_exist: bool = False) -> None:
    """Refuse, before anything is appended, a file that is not an Optuna journal.

    Optuna's JournalFileBackend appends to whatever file it is given; a SQLite study or another
    program's file named by mistake would be damaged. A journal is JSON lines, each an operation
    with an `op_code`; an empty or missing file becomes a new journal (unless `must_exist`).
    """
    if not path.exists():
        if must_exist:
            raise JournalFileError(
                f"storage {where}: there is no journal file {path}; no sweep has run there"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JournalFileError(
                f"storage {where}: cannot create the folder of journal file {path} ({e.strerror}); "
                "expected a path in a folder that exists or can be created"
            ) from None
        return
    if not path.is_file():
        raise JournalFileError(f"storage {where}: {path} is not a file; expected an Optuna journal file")
    with path.open("rb") as f:
        first = f.readline(1 << 20)
    if not first:
        return
    kind = "a SQLite database (use sqlite:///...)" if first.startswith(b"SQLite format 3\x00") else None
    if kind is None:
        try:
            entry = json.loads(first)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and "op_code" in entry:
            return
        kind = "not an Optuna journal (its first line is no journal operation)"
    raise JournalFileError(
        f"storage {where}: {path} is {kind}; nothing was written to it. "
        "Expected an Optuna journal file, or a new path"
    )


def open_journal(
    path: Path,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> BaseStorage:
    """JournalStorage on `path` with the NFS-safe lock; with heartbeats where they are asked for."""
    backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    if heartbeat_interval is None or BaseHeartbeat is None:
        return JournalStorage(backend)
    return HeartbeatJournalStorage(
        backend, heartbeat_interval, grace_period or 2 * heartbeat_interval, stale_trial_callback
    )


if BaseHeartbeat is not None:

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """A JournalStorage whose trials beat: Optuna's stale-trial recovery then works on journals."""

        def __init__(
            self,
            backend: JournalFileBackend,
            heartbeat_interval: int,
            grace_period: int,
            stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None,
        ) -> None:
            super().__init__(backend)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self.stale_trial_callback = stale_trial_callback

        def record_heartbeat(self, trial_id: int) -> None:
            # A trial that ended between the beat's timer and now needs no beat.
            with contextlib.suppress(update_finished_trial_error()):
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            # Optuna's abstract method (BaseHeartbeat), called by optuna.storages.fail_stale_trials.
            oldest = time.time() - self.grace_period
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            return [
                self.get_trial_id_from_study_id_trial_number(study_id, t.number)
                for t in running
                if isinstance(beat := t.system_attrs.get(HEARTBEAT_ATTR), float) and beat < oldest
            ]

        def get_heartbeat_interval(self) -> int | None:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
            return self.stale_trial_callback

        # Its name before Optuna 4.9.
        get_failed_trial_callback = get_heartbeat_stale_trial_callback
