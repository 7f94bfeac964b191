"""The task's side of a sweep: report a value per step, learn whether to stop.

A task run by the pruning Optuna sweeper finds its trial through the job's
own Hydra config: the sweeper sets the environment variable `TRIAL_ENV`
(through `hydra.job.env_set`, so any launcher carries it) to the study and
trial number, and `hydra.sweeper` holds the storage URL and the pruner. The
trial is reached through the storage, not process memory, so this works in
a joblib worker, a SLURM job or the sweep's own process alike. Outside a
sweep, `current_trial()` returns a stand-in whose calls do nothing, so the
same task code runs unchanged on its own.

Example:

    from pruning_optuna_sweeper import TrialPruned, current_trial

    @hydra.main(config_path="conf", config_name="config")
    def main(cfg):
        trial = current_trial()
        for step in range(cfg.steps):
            loss = train_one_step()
            trial.report(loss, step)
            if trial.should_prune():
                raise TrialPruned()
        return loss
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from pruning_optuna_sweeper.checkpoint import RunCheckpoint, TrialCheckpoint
from pruning_optuna_sweeper.compat import instantiate_trusted
from pruning_optuna_sweeper.study import PRUNED_ATTR

TRIAL_ENV = "PRUNING_OPTUNA_TRIAL"
# Hyperband's `max_resource: auto`, pinned on the study so every worker counts the same brackets.
HYPERBAND_RESOURCE_ATTR = "hyperband_max_resource"
# Where a trial's artifacts are (Optuna records their ids, not their store): {"folder": absolute path}
# or {"config": the store's `_target_` config, unresolved}; read back by pruning_optuna_sweeper.artifacts.
ARTIFACT_STORE_ATTR = "artifact_store"

# Studies with no storage a task process could open (storage: null), for tasks
# the basic launcher runs in the sweep's own process.
_IN_PROCESS_STUDIES: dict[str, tuple[optuna.Study, BaseStorage]] = {}


class NoTrial:
    """What `current_trial()` returns outside a sweep: every call does nothing."""

    number: int | None = None
    study_name: str | None = None
    direction: str | None = None

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False

    def set_user_attr(self, key: str, value: Any) -> None:
        pass

    def mark_pruned(self) -> None:
        pass

    def upload_artifact(self, path: str | Path) -> str | None:
        return None

    def save_checkpoint(self, state: Any, step: int) -> None:
        """Write `state` as `checkpoint.pt` in the run's folder (pruning_optuna_sweeper.checkpoint)."""
        RunCheckpoint(run_folder()).save(state, step)

    def checkpoint(self) -> tuple[int, Any] | None:
        """(step, state) of the run folder's checkpoint, or None (none there, or damaged: one warning)."""
        return RunCheckpoint(run_folder()).load()

    def discard_checkpoint(self) -> None:
        """Remove the run folder's checkpoint: the run has finished."""
        RunCheckpoint(run_folder()).discard()

    def __bool__(self) -> bool:
        return False


class SweepTrial:
    """The running trial of a sweep, as its task sees it (a thin optuna.Trial)."""

    def __init__(
        self,
        trial: optuna.Trial,
        artifact_store: Callable[[], Any] | None = None,
        store_record: dict[str, Any] | None = None,
        checkpoints: Callable[[], TrialCheckpoint] | None = None,
        recorded: set[int] | None = None,
    ) -> None:
        self._trial = trial
        self._artifact_store = artifact_store
        self._store_record = store_record
        self._checkpoints = checkpoints
        self._resumed_step: int | None = None  # the step checkpoint() returned
        self._recorded = recorded or set()  # the steps with a value when this job began
        self.number = trial.number
        self.study_name = trial.study.study_name
        # Optuna neither records steps nor prunes in a study of several objectives.
        self._prunable = len(trial.study.directions) == 1
        # "minimize" or "maximize": how the reported values are compared; None with several objectives.
        self.direction = trial.study.direction.name.lower() if self._prunable else None
        self._last_step: int | None = None

    def report(self, value: float, step: int) -> None:
        """Record `value` at `step` (an epoch, say): the pruner compares trials by these.

        A step whose value the trial had when this job began (a retry inherits its predecessor's;
        a requeued job finds its earlier run's), or the step a checkpoint resumed from once its value
        is recorded, is reported again by a task that trains it again: that report is skipped."""
        checkpoints = self._checkpoints
        again = step in self._recorded or (
            step == self._resumed_step and checkpoints is not None and checkpoints().reported(step)
        )
        if self._prunable:
            self._last_step = step
            if not again:
                self._trial.report(value, step)

    def should_prune(self) -> bool:
        """Whether the pruner says to stop now (the task then raises TrialPruned, or calls
        `mark_pruned()` and returns)."""
        return self._prunable and self._trial.should_prune()

    def set_user_attr(self, key: str, value: Any) -> None:
        self._trial.set_user_attr(key, value)

    def mark_pruned(self) -> None:
        """Have the sweep record this trial PRUNED (with its last reported value) although the
        task returns normally: a graceful stop, for apps whose framework would print a raised
        TrialPruned as a crash (a Lightning trainer told to stop, say)."""
        self._trial.set_user_attr(PRUNED_ATTR, self._last_step)

    def upload_artifact(self, path: str | Path) -> str | None:
        """Store the file at `path` with the trial (the sweep's `artifact_store`); its artifact id.

        Where the store is goes with the trial (ARTIFACT_STORE_ATTR), so that the file can be
        fetched later (pruning_optuna_sweeper.artifacts) without knowing the sweep's settings."""
        store = None if self._artifact_store is None else self._artifact_store()
        if store is None:
            return None
        artifact_id = optuna.artifacts.upload_artifact(
            study_or_trial=self._trial, file_path=str(path), artifact_store=store
        )
        if self._store_record is not None:
            self._trial.set_user_attr(ARTIFACT_STORE_ATTR, self._store_record)
        return artifact_id

    def save_checkpoint(self, state: Any, step: int) -> None:
        """Save `state` (what torch.save writes and torch.load(weights_only=True) reads) as the trial's
        latest checkpoint, reached at `step`; the one before is removed. Call it before reporting
        `step`'s value, so that a retry never sees a value without its checkpoint."""
        if self._checkpoints is not None:
            self._checkpoints().save(state, step)

    def checkpoint(self) -> tuple[int, Any] | None:
        """(step, state) of this trial's latest checkpoint, its own (a requeued job's) or the one of
        the trial it retries, whose values up to `step` it then reports too; None: start over."""
        loaded = None if self._checkpoints is None else self._checkpoints().load()
        self._resumed_step = None if loaded is None else loaded[0]
        return loaded

    def discard_checkpoint(self) -> None:
        """Remove the trial's checkpoint: it has ended with a result (no retry will need it)."""
        if self._checkpoints is not None:
            self._checkpoints().discard()

    def __bool__(self) -> bool:
        return True


def trial_env_value(
    study_name: str, number: int, sweep: str | None = None, journal: str | None = None
) -> str:
    """The value of TRIAL_ENV that names trial `number` of `study_name`, the sweep process
    (host:pid) that launched it, and the journal file that holds an in-memory study for the
    sweep's life (`storage: null` with jobs in other processes): hex digits, which need no quoting
    in a Hydra override whatever the study's name holds."""
    named: dict[str, Any] = {"study": study_name, "number": number}
    if sweep is not None:
        named["sweep"] = sweep
    if journal is not None:
        named["journal"] = journal
    return json.dumps(named).encode().hex()


class TrialNotRunningError(RuntimeError):
    """The job's trial has ended already: its sweep stopped, or gave it up (no heartbeats)."""


def read_trial_env(value: str) -> dict[str, Any]:
    """{"study": name, "number": n, "sweep": host:pid or absent} from a TRIAL_ENV value."""
    record: dict[str, Any] = json.loads(bytes.fromhex(value))
    return record


def register_in_process_study(study: optuna.Study, storage: BaseStorage) -> None:
    """Let tasks in this process reach `study` when it has no storage they could open."""
    _IN_PROCESS_STUDIES.clear()
    _IN_PROCESS_STUDIES[study.study_name] = (study, storage)


@dataclasses.dataclass(frozen=True)
class TrialJob:
    """What names a job's trial, picklable: its TRIAL_ENV value and its `hydra.sweeper` config."""

    spec: str
    sweeper: Any


def trial_job() -> TrialJob | None:
    """This job's trial as a picklable handle for `current_trial(job)`; None outside a sweep."""
    spec = os.environ.get(TRIAL_ENV)
    if not spec:
        return None
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    # Resolved here: an interpolation may name keys outside hydra.sweeper, or the job's environment.
    return TrialJob(spec, OmegaConf.create(OmegaConf.to_container(HydraConfig.get().sweeper, resolve=True)))


def current_trial(job: TrialJob | None = None) -> SweepTrial | NoTrial:
    """The trial this task runs as, or a stand-in that does nothing outside a sweep.

    `job` (from `trial_job()` in the job's own process) opens it in a process the task started
    itself, where Hydra's state is not (a Lightning `ddp_spawn` rank)."""
    job = job or trial_job()
    if job is None:
        return NoTrial()
    from omegaconf import OmegaConf

    named = read_trial_env(job.spec)
    sweeper = job.sweeper
    in_process = sweeper.get("storage") is None and not named.get("journal")
    if in_process:
        if named["study"] not in _IN_PROCESS_STUDIES:
            return NoTrial()  # an in-memory study that lives in another process
        study, storage = _IN_PROCESS_STUDIES[named["study"]]
    else:
        from pruning_optuna_sweeper.storage import open_storage, open_sweep_journal

        if sweeper.get("storage") is None:  # the in-memory study, kept in a journal file for the sweep
            storage = open_sweep_journal(named["journal"])
        else:
            storage = open_storage(
                sweeper.storage,
                heartbeat_interval=sweeper.get("heartbeat_interval"),
                grace_period=sweeper.get("grace_period"),
            )
        pruner = sweeper.get("pruner")
        pruner_yaml = None if pruner is None else OmegaConf.to_yaml(_pinned(pruner, storage, named["study"]))
        study = _study(storage, named["study"], pruner_yaml)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(named["study"]), named["number"]
    )
    if not in_process:
        state = storage.get_trial(trial_id).state
        if state.is_finished():
            # A queued job that starts after its sweep was interrupted, say: nothing to run for.
            raise TrialNotRunningError(
                f"trial {named['number']} of study {named['study']!r} is {state.name} already "
                "(its sweep stopped or gave it up): this job does not run it"
            )
        from pruning_optuna_sweeper.job import take_over

        take_over(storage, trial_id, named["number"], named.get("sweep"))
    setting = sweeper.get("artifact_store")
    store = functools.partial(artifact_store, setting, sweeper.storage)
    record = store_record(setting, sweeper.storage)
    trial = optuna.Trial(study, trial_id)

    @functools.cache
    def checkpoints() -> TrialCheckpoint:
        """Beside the trial's artifacts; without an artifact store, in the job's own folder."""
        here, where = store(), record
        if here is None or where is None:
            folder = run_folder().resolve()
            here, where = _filesystem_store(folder), {"folder": str(folder)}
        return TrialCheckpoint(trial, storage, trial_id, here, where)

    # A retry starts with its predecessor's values (inherit_intermediate_values), a requeued job with
    # its own earlier run's: a task that trains those steps again reports them again.
    recorded = set(storage.get_trial(trial_id).intermediate_values)
    return SweepTrial(trial, store, record, checkpoints, recorded)


def run_folder() -> Path:
    """The job's Hydra output folder (the working directory where Hydra has not started)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


@functools.lru_cache(maxsize=8)
def _study(storage: BaseStorage, study_name: str, pruner_yaml: str | None) -> optuna.Study:
    """The study with the sweep's pruner, loaded once per process (trials in one worker share it)."""
    from omegaconf import OmegaConf

    from .compat import instantiate_trusted

    pruner = None
    if pruner_yaml is not None:
        pruner = instantiate_trusted(OmegaConf.create(pruner_yaml), "optuna.pruners.*")
    return optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)


def _pinned(pruner: Any, storage: BaseStorage, study_name: str) -> Any:
    """The pruner config with Hyperband's `max_resource: auto` pinned for the whole study.

    Left on auto, Hyperband takes it from the completed trials a process
    sees when it first prunes, so workers and reruns could count different
    brackets and put one trial in different ones. The first trial that
    finds completed trials records Optuna's own choice (their last step + 1)
    on the study, and every later trial uses it.
    """
    from omegaconf import OmegaConf

    if OmegaConf.select(pruner, "max_resource", default=None) != "auto":
        return pruner
    study_id = storage.get_study_id_from_name(study_name)
    pinned = storage.get_study_user_attrs(study_id).get(HYPERBAND_RESOURCE_ATTR)
    if pinned is None:
        steps = [
            t.last_step
            for t in storage.get_all_trials(
                study_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
            )
            if t.last_step is not None
        ]
        if not steps:
            return pruner
        pinned = max(steps) + 1
        storage.set_study_user_attr(study_id, HYPERBAND_RESOURCE_ATTR, pinned)
    return OmegaConf.merge(pruner, {"max_resource": pinned})


def artifact_store(setting: Any, storage_url: str | None) -> Any:
    """The artifact store `hydra.sweeper.artifact_store` names.

    `auto`: a FileSystemArtifactStore in `<study file>-artifacts/` beside a
    SQLite study file (none for other storages); a path: a
    FileSystemArtifactStore there; a `_target_` config: that store; null: none.
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        folder = Path(setting) if setting != "auto" else artifact_folder(storage_url)
        return None if folder is None else _filesystem_store(folder)
    # The sweep's own config names the store, as it names its hooks: that target is trusted.
    return instantiate_trusted(setting, [str(setting.get("_target_"))])


def store_record(setting: Any, storage_url: str | None) -> dict[str, Any] | None:
    """What a trial records of the store `setting` names, to reach it again from another folder or machine.

    A folder as an absolute path; a `_target_` config unresolved, so that an interpolation such as
    `${oc.env:...}` is resolved where the store is opened again, and a secret it reads stays where it was.
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        folder = Path(setting) if setting != "auto" else artifact_folder(storage_url)
        return None if folder is None else {"folder": str(folder.resolve())}
    from omegaconf import OmegaConf

    return {"config": OmegaConf.to_container(setting, resolve=False)}


def _filesystem_store(path: Path) -> optuna.artifacts.FileSystemArtifactStore:
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


def artifact_folder(url: str | None) -> Path | None:
    """The default artifact store's folder: `<study file>-artifacts/` beside a SQLite study."""
    return beside_study_file(url, "artifacts")


def beside_study_file(url: str | None, suffix: str) -> Path | None:
    """`<study file>-<suffix>/` beside a SQLite or journal study file; None for other storages."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    from pruning_optuna_sweeper.journal import is_journal_url, journal_path

    if is_journal_url(url):
        journal = journal_path(url)
        return journal.with_name(f"{journal.stem}-{suffix}")
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database)
    return database.with_name(f"{database.stem}-{suffix}")


def folder_name(study_name: str) -> str:
    """A study's name made one folder name (its runs' and reports' folder)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name).lstrip(".") or "study"
