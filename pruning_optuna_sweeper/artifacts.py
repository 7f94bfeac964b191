"""A trial's stored file (an Optuna artifact, e.g. its trained model), fetched back to a path.

A task stores files with `current_trial().upload_artifact(path)` and records the
id under a user attr of its choice (this project's main.py: `model_artifact`).
Optuna records an artifact's id and file name with the trial, but not the store
that holds the bytes, so the task side also records where that store is
(pruning_optuna_sweeper.trial.ARTIFACT_STORE_ATTR). `fetch_artifact` reads that record, opens
the store and copies the bytes: it knows nothing of what the file holds.

For a trial recorded before stores were recorded, the sweeper's default store is
tried: `<study file>-artifacts/` beside a SQLite study.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from pruning_optuna_sweeper.storage import first_line, mask_url
from pruning_optuna_sweeper.study import StudyError
from pruning_optuna_sweeper.trial import ARTIFACT_STORE_ATTR, artifact_folder

# The user attr this project's tasks record their model's artifact id under.
MODEL_ARTIFACT_ATTR = "model_artifact"
# A store config recorded with a trial is built only from these classes: the record is read
# from a database, which should not decide what code runs here.
TRUSTED_STORES = "optuna.artifacts.*"
# What optuna.artifacts.upload_artifact returns (a UUID), and all optuna-dashboard serves: never a path.
ARTIFACT_ID = re.compile(r"[0-9a-fA-F-]+")


class ArtifactError(StudyError):
    """A trial's artifact that cannot be fetched: none recorded, its store gone, its bytes missing."""


class ArtifactPathError(ArtifactError):
    """The path to copy an artifact to cannot take it: a file is there, or it cannot be written."""


def fetch_artifact(
    study: optuna.Study,
    storage: BaseStorage,
    trial: FrozenTrial,
    storage_url: str | None,
    path: str | os.PathLike[str],
    attr: str = MODEL_ARTIFACT_ATTR,
) -> Path:
    """Copy the artifact whose id `trial` (of `study` in `storage`, opened from `storage_url`) records
    under user attr `attr` to `path`, a new file.

    A file already at `path` is refused; one left half-written by a failed copy is removed.
    """
    where = mask_url(storage_url)
    named = f"trial {trial.number} of study {study.study_name!r} in {where}"
    artifact_id = trial.user_attrs.get(attr)
    if not artifact_id:
        listed = ", ".join(m.filename for m in optuna.artifacts.get_all_artifact_meta(trial, storage=storage))
        raise ArtifactError(
            f"{named} ({trial.state.name}) records no artifact id under user attr {attr!r}"
            + (f" (its artifacts: {listed})" if listed else "; it has no artifacts")
            + ": its task stored no file, or the study was run before trials kept their files. Expected "
            f"a trial whose task called upload_artifact and recorded the id as {attr!r}"
        )
    if not isinstance(artifact_id, str) or not ARTIFACT_ID.fullmatch(artifact_id):
        raise ArtifactError(
            f"{named} records {artifact_id!r} as user attr {attr!r}; "
            "expected an artifact id (hex digits and '-', "
            "as optuna.artifacts.upload_artifact returns)"
        )
    store, described = trial_store(trial, storage_url, named)
    if store is None:
        raise ArtifactError(
            f"{named} records artifact {artifact_id} but not where it is stored, and {where} is not a SQLite "
            "study with a default store beside it; expected a trial stored by this sweeper "
            "(hydra.sweeper.artifact_store)"
        )
    target = Path(path)
    if target.exists():
        raise ArtifactPathError(
            f"{target} exists; expected the path of a new file (remove it first, or choose another)"
        )
    under_a_file = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if under_a_file is not None:
        raise ArtifactPathError(
            f"cannot write {target}: {under_a_file} is a file, not a folder; expected a path in a folder"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        optuna.artifacts.download_artifact(
            artifact_store=store, file_path=str(target), artifact_id=artifact_id
        )
    except ArtifactNotFound:
        _remove_partial(target)
        raise ArtifactError(
            f"{named} records artifact {artifact_id} in {described}, which does not hold it (removed, or "
            "the store moved); expected the store the sweep wrote to"
        ) from None
    except OSError as e:
        _remove_partial(target)
        raise ArtifactPathError(
            f"cannot write {target} ({e.strerror or e}); expected a writable path"
        ) from None
    return target


def trial_store(trial: FrozenTrial, storage_url: str | None, named: str) -> tuple[Any, str]:
    """The artifact store `trial` recorded (else the default beside a SQLite study), and how to name it.

    None for the store where nothing says where it is. A recorded folder that is gone is
    replaced by the default one beside the study, where that exists (a project folder moved with
    its study), else an ArtifactError (opening it would make an empty one); `named` names the trial.
    """
    record = trial.user_attrs.get(ARTIFACT_STORE_ATTR)
    default = artifact_folder(storage_url)
    if record is None:
        return (None, "") if default is None else _folder_store(named, default)
    if "folder" in record:
        recorded = Path(record["folder"])
        moved = not recorded.is_dir() and default is not None and default.is_dir()
        return _folder_store(named, default if moved and default is not None else recorded)
    return _configured_store(named, record["config"])


def open_recorded_store(record: dict[str, Any], named: str) -> Any:
    """The store a record of pruning_optuna_sweeper.trial.store_record names (a trial's checkpoint's)."""
    if "folder" in record:
        return _folder_store(named, Path(record["folder"]))[0]
    return _configured_store(named, record["config"])[0]


def _folder_store(named: str, folder: Path) -> tuple[Any, str]:
    if not folder.is_dir():
        raise ArtifactError(
            f"the artifacts of {named} were stored in the folder {folder}, which is gone; expected that "
            "folder (the sweep's hydra.sweeper.artifact_store) moved back or restored"
        )
    return optuna.artifacts.FileSystemArtifactStore(str(folder)), f"the folder {folder}"


def _configured_store(named: str, config: dict[str, Any]) -> tuple[Any, str]:
    """The store a recorded `_target_` config builds, only from Optuna's own store classes."""
    from omegaconf import OmegaConf

    from .compat import instantiate_trusted

    target = config.get("_target_", "?")
    try:
        store = instantiate_trusted(OmegaConf.create(config), TRUSTED_STORES)
    except Exception as e:  # instantiate wraps whatever the store's constructor raises
        raise ArtifactError(
            f"the artifacts of {named} are in the store its config names ({target}), "
            "which cannot be opened here "
            f"({first_line(e)}); expected an optuna.artifacts store this process can reach (its credentials "
            "in the environment)"
        ) from None
    return store, f"the {target} store"


def _remove_partial(path: Path) -> None:
    """A partial download's file, where one was made (none under a file, or in a read-only folder)."""
    with contextlib.suppress(OSError):
        path.unlink()
