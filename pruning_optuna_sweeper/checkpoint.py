"""A trial's checkpoint: saved by its task each step, found again by the trial's retry.

`current_trial().save_checkpoint(state, step)` writes `state` (anything `torch.save` writes and
`torch.load(weights_only=True)` reads back: tensors, numbers, strings, lists, dicts) and
`current_trial().checkpoint()` returns the latest one, or None. In a sweep the files go to the
trial's artifact store (`hydra.sweeper.artifact_store`; without one, the job's own folder), two
written in turn with their digest, and the user attr CHECKPOINT_ATTR points at them (written once,
so that a save costs no database write). Optuna copies user attrs into a retry
(RetryHeartbeatStaleTrialCallback, the sweep's interrupt retry), so a retry on another node reads its
predecessor's checkpoint. Outside a sweep the file is `checkpoint.pt` in the run's folder,
written beside it and renamed. A damaged or foreign file gives one warning: the trial resumes from
the whole file before it, or starts over (None). torch is imported only when these are called.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

log = logging.getLogger(__name__)

# The user attr of a trial that points at its latest checkpoint.
CHECKPOINT_ATTR = "checkpoint"
# A single run's checkpoint, in its folder.
RUN_CHECKPOINT = "checkpoint.pt"
FORMAT = "pruning-optuna-sweeper-checkpoint/1"


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - the task saves tensors, so torch is there
        raise RuntimeError("checkpoints are written with torch.save: expected torch installed") from None
    return torch


def encode(state: Any, step: int) -> bytes:
    """`state` and its step as the bytes of one torch file (with a format mark, to refuse others)."""
    buffer = io.BytesIO()
    _torch().save({"format": FORMAT, "step": int(step), "state": state}, buffer)
    return buffer.getvalue()


def decode(body: bytes, where: str, problems: list[str] | None = None) -> tuple[int, Any] | None:
    """(step, state) from `encode`'s bytes; None for a damaged or foreign file, with one warning
    (or, given `problems`, its reason added there for the caller to say)."""
    problem = None
    try:
        payload = _torch().load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for bytes that are not its own
        payload, problem = None, f"{where} is not a file torch reads safely ({_first_line(error)})"
    if problem is None and (
        not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload
    ):
        problem = f"{where} was not written by save_checkpoint"
    if problem is not None:
        if problems is None:
            _warn(problem)
        else:
            problems.append(problem)
        return None
    assert isinstance(payload, dict)
    return int(payload["step"]), payload["state"]


def _warn(problem: str) -> None:
    log.warning("%s: the trial starts over from its first step", problem)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class RunCheckpoint:
    """A single run's checkpoint: `checkpoint.pt` in `folder`, written beside it and renamed."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / RUN_CHECKPOINT

    def save(self, state: Any, step: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(encode(state, step))
            os.replace(temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def load(self) -> tuple[int, Any] | None:
        if not self.path.is_file():
            return None
        return decode(self.path.read_bytes(), f"the checkpoint {self.path}")

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class TrialCheckpoint:
    """A sweep trial's checkpoint in an Optuna artifact store, found through CHECKPOINT_ATTR.

    Each trial writes two files in turn (SLOTS), each the sha256 of its bytes then the bytes: a
    write cut short damages only the one being written, and the other holds the checkpoint before.
    The pointer (the two ids, the store, the trial) is recorded once, at the trial's first save, so
    that an epoch's save costs no database write; a retry writes files of its own, then removes those
    it resumed from. Loading reads both and takes the newest whole one.
    """

    SLOTS = 2

    def __init__(
        self, trial: optuna.Trial, storage: BaseStorage, trial_id: int, store: Any, record: dict[str, Any]
    ) -> None:
        self.trial, self.storage, self.trial_id = trial, storage, trial_id
        self.store = store  # an optuna.artifacts store
        self.record = record  # how to open that store again (pruning_optuna_sweeper.trial.store_record)
        self.own: dict[str, Any] | None = None  # this trial's pointer, once it has saved
        self.next_slot = 0

    def _pointer(self) -> dict[str, Any] | None:
        pointer = self.storage.get_trial_user_attrs(self.trial_id).get(CHECKPOINT_ATTR)
        return pointer if isinstance(pointer, dict) and isinstance(pointer.get("ids"), list) else None

    def save(self, state: Any, step: int) -> None:
        body = encode(state, step)
        if self.own is None:
            inherited = self._pointer()
            ids = [f"checkpoint-{uuid.uuid4().hex}" for _ in range(self.SLOTS)]
            self.own = {"ids": ids, "store": self.record, "trial": self.trial.number}
            self.store.write(ids[0], io.BytesIO(hashlib.sha256(body).digest() + body))
            self.trial.set_user_attr(CHECKPOINT_ATTR, self.own)
            self.next_slot = 1
            if inherited is not None:
                self._remove(inherited)  # the trial it retries, or an unreadable one: superseded
            return
        self.store.write(self.own["ids"][self.next_slot], io.BytesIO(hashlib.sha256(body).digest() + body))
        self.next_slot = (self.next_slot + 1) % self.SLOTS

    def load(self) -> tuple[int, Any] | None:
        pointer = self._pointer()
        if pointer is None:
            return None
        found: list[tuple[int, Any, int]] = []
        problems: list[str] = []
        for slot, artifact_id in enumerate(pointer["ids"]):
            where = f"the checkpoint of trial {pointer.get('trial')} (artifact {artifact_id})"
            body = self._read(pointer, str(artifact_id), where, problems)
            if body is None:
                continue
            digest, body = body[:32], body[32:]
            if hashlib.sha256(body).digest() != digest:
                problems.append(f"{where} is damaged (its bytes differ from those saved)")
                continue
            loaded = decode(body, where, problems)
            if loaded is not None:
                found.append((loaded[0], loaded[1], slot))
        if not found:
            if problems:
                _warn("; ".join(problems))
            return None
        step, state, slot = max(found, key=lambda f: f[0])
        if problems:
            log.warning(
                "%s: the trial resumes from the checkpoint of step %d before it", "; ".join(problems), step
            )
        if pointer.get("trial") == self.trial.number:  # its own (a requeued job): go on in turn
            self.own, self.next_slot = pointer, (slot + 1) % self.SLOTS
        else:
            self._inherit_values(int(pointer["trial"]), step)
        return step, state

    def _read(
        self, pointer: dict[str, Any], artifact_id: str, where: str, problems: list[str]
    ) -> bytes | None:
        """The file's bytes; None for a slot never written, or one unreadable (added to `problems`)."""
        from optuna.artifacts.exceptions import ArtifactNotFound

        try:
            with self._store_of(pointer).open_reader(artifact_id) as reader:
                data: bytes = reader.read()
                return data
        except ArtifactNotFound:
            return None
        except Exception as error:  # a store gone, a record not ours
            problems.append(f"{where} cannot be read ({_first_line(error)})")
            return None

    def reported(self, step: int) -> bool:
        """Whether the trial has a value at `step` already."""
        return step in self.storage.get_trial(self.trial_id).intermediate_values

    def discard(self) -> None:
        pointer = self._pointer()
        if pointer is not None:
            self._remove(pointer)
            self.trial.set_user_attr(CHECKPOINT_ATTR, None)
        self.own = None

    def _store_of(self, pointer: dict[str, Any]) -> Any:
        if pointer.get("store") == self.record:
            return self.store
        from pruning_optuna_sweeper.artifacts import open_recorded_store

        return open_recorded_store(pointer["store"], f"trial {pointer.get('trial')}")

    def _remove(self, pointer: dict[str, Any]) -> None:
        """Remove a pointer's files; one never written, gone or unreachable is left as it is."""
        for artifact_id in pointer["ids"]:
            try:
                self._store_of(pointer).remove(str(artifact_id))
            except Exception as error:
                log.debug("checkpoint %s not removed: %s", artifact_id, error)

    def _inherit_values(self, number: int, step: int) -> None:
        """Report the writer's values up to `step` that this trial lacks, so the pruner sees the whole
        curve (a retry Optuna's callback queued has them already; one queued without them has not)."""
        if number == self.trial.number:
            return
        storage = self.storage
        study_id = storage.get_study_id_from_name(self.trial.study.study_name)
        writer = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
        own = storage.get_trial(self.trial_id).intermediate_values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for at, value in sorted(writer.intermediate_values.items()):
                if at <= step and at not in own:
                    self.trial.report(value, at)
