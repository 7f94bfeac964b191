"""A trial's checkpoint: saved by its task each step, found again by the trial's retry.

`current_trial().save_checkpoint(state, step)` writes `state` (anything `torch.save` writes and
`torch.load(weights_only=True)` reads back: tensors, numbers, strings, lists, dicts) and
`current_trial().checkpoint()` returns the latest one, or None. In a sweep the file goes to the
trial's artifact store (`hydra.sweeper.artifact_store`; without one, the job's own folder) under a
new id each save, and the user attr CHECKPOINT_ATTR points at it (id, store, step, digest): the
pointer moves only once the file is whole, then the older file is removed. Optuna copies user attrs
into a retry (RetryHeartbeatStaleTrialCallback, the sweep's interrupt retry), so a retry on another
node reads its predecessor's pointer. Outside a sweep the file is `checkpoint.pt` in the run's folder,
written beside it and renamed. A damaged or foreign file gives one warning and None: the task starts
over. torch is imported only when these are called.
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


def decode(body: bytes, where: str) -> tuple[int, Any] | None:
    """(step, state) from `encode`'s bytes; None with one warning for a damaged or foreign file."""
    try:
        payload = _torch().load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for bytes that are not its own
        _warn(f"the checkpoint {where} is not a file torch reads safely ({_first_line(error)})")
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        _warn(f"the checkpoint {where} was not written by save_checkpoint")
        return None
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
        return decode(self.path.read_bytes(), str(self.path))

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class TrialCheckpoint:
    """A sweep trial's checkpoint in an Optuna artifact store, found through CHECKPOINT_ATTR."""

    def __init__(
        self, trial: optuna.Trial, storage: BaseStorage, trial_id: int, store: Any, record: dict[str, Any]
    ) -> None:
        self.trial, self.storage, self.trial_id = trial, storage, trial_id
        self.store = store  # an optuna.artifacts store
        self.record = record  # how to open that store again (pruning_optuna_sweeper.trial.store_record)

    def _pointer(self) -> dict[str, Any] | None:
        pointer = self.storage.get_trial_user_attrs(self.trial_id).get(CHECKPOINT_ATTR)
        return pointer if isinstance(pointer, dict) else None

    def save(self, state: Any, step: int) -> None:
        body = encode(state, step)
        artifact_id = f"checkpoint-{uuid.uuid4().hex}"
        self.store.write(artifact_id, io.BytesIO(body))
        before = self._pointer()
        pointer = {
            "id": artifact_id,
            "store": self.record,
            "step": int(step),
            "trial": self.trial.number,
            "sha256": hashlib.sha256(body).hexdigest(),
            "bytes": len(body),
        }
        self.trial.set_user_attr(CHECKPOINT_ATTR, pointer)
        if before is not None:
            self._remove(before)

    def load(self) -> tuple[int, Any] | None:
        pointer = self._pointer()
        if pointer is None:
            return None
        where = f"of trial {pointer.get('trial')} (step {pointer.get('step')}, artifact {pointer.get('id')})"
        try:
            store = self._store_of(pointer)
            with store.open_reader(str(pointer["id"])) as reader:
                body = reader.read()
        except Exception as error:  # a store gone, a file removed, a record not ours
            _warn(f"the checkpoint {where} cannot be read ({_first_line(error)})")
            return None
        if hashlib.sha256(body).hexdigest() != pointer.get("sha256"):
            _warn(f"the checkpoint {where} is damaged (its bytes differ from those saved)")
            return None
        loaded = decode(body, where)
        if loaded is not None:
            self._inherit_values(int(pointer["trial"]), loaded[0])
        return loaded

    def reported(self, step: int) -> bool:
        """Whether the trial has a value at `step` already."""
        return step in self.storage.get_trial(self.trial_id).intermediate_values

    def discard(self) -> None:
        pointer = self._pointer()
        if pointer is not None:
            self._remove(pointer)
            self.trial.set_user_attr(CHECKPOINT_ATTR, None)

    def _store_of(self, pointer: dict[str, Any]) -> Any:
        if pointer.get("store") == self.record:
            return self.store
        from pruning_optuna_sweeper.artifacts import open_recorded_store

        return open_recorded_store(pointer["store"], f"trial {pointer.get('trial')}")

    def _remove(self, pointer: dict[str, Any]) -> None:
        """Remove an older checkpoint's file; one already gone or unreachable is left as it is."""
        try:
            self._store_of(pointer).remove(str(pointer["id"]))
        except Exception as error:
            log.debug("older checkpoint %s not removed: %s", pointer.get("id"), error)

    def _inherit_values(self, number: int, step: int) -> None:
        """Report the writer's values up to `step` that this trial lacks, so the pruner sees the whole
        curve (a retry from RetryHeartbeatStaleTrialCallback has them already; an interrupt's has not)."""
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
