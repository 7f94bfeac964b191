"""Reading a study: names, trial descriptions, best trial, recorded identity."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

# Why a trial failed, in one line (set by the sweeper).
FAIL_REASON_ATTR = "fail_reason"
# What every trial of a study shares (an app's SweepHooks.study_identity).
IDENTITY_ATTR = "identity"
# Every value the sweep fixed for a trial ({key: value as written}); the stock sweeper
# also sets each as a user attr of its own, which is kept for compatibility.
FIXED_PARAMS_ATTR = "fixed_params"
# What a task recorded it trained with (a nested dict of config values): best_of and export
# prefer it to the sampled and fixed values alone, which miss what neither set.
CONFIG_ATTR = "config"
# The worker (host:pid) that ran a trial.
WORKER_ATTR = "worker"
# Where a trial's task ran, recorded by the task's side (pruning_optuna_sweeper.job): {"host", "pid",
# "beats": whether that process sends the trial's heartbeats, and "slurm_job_id" where SLURM ran it}.
JOB_ATTR = "job"
# Set by a task that stopped early on the pruner's word and returned normally
# (`current_trial().mark_pruned()`): the step it stopped at; the sweep records the trial PRUNED.
PRUNED_ATTR = "pruned_at_step"


class StudyError(LookupError):
    """A study that cannot give what was asked of it."""


class StudyNotFoundError(StudyError):
    """No such study, or no completed trial in it."""


class IdentityMismatchError(ValueError):
    """A run's identity (its data, say) differs from the one its study recorded."""


def check_identity(
    study: optuna.Study, identity: dict[str, Any] | None, where: str, *, user: str = "sweep"
) -> None:
    """Refuse to mix trials of different identities in one study, or to apply a study's
    best parameters to a run of another identity (`user="run"`)."""
    recorded = study.user_attrs.get(IDENTITY_ATTR)
    if identity is None or recorded is None or recorded == identity:
        return
    advice = "Choose another study (hydra.sweeper.study_name=...) or" if user == "sweep" else "Expected"
    raise IdentityMismatchError(
        f"study {study.study_name!r} in {where} was run on {_shown(recorded)}, but this {user}'s is "
        f"{_shown(identity)}; results would not compare. {advice} the study's."
    )


def _shown(identity: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v if len(str(v)) <= 20 else str(v)[:12]}" for k, v in identity.items())


def python_command() -> str:
    """How to name this Python in a command printed for the user to paste: `python` where the
    shell's is this one (an activated virtual environment, or none), else its own path, so
    that a hint printed by `make sweep` (a venv the shell has not activated) works as pasted."""
    import os
    import sys
    from pathlib import Path

    if sys.prefix == sys.base_prefix or os.environ.get("VIRTUAL_ENV") == sys.prefix:
        return "python"
    executable = Path(sys.executable)
    return (
        str(executable.relative_to(Path.cwd())) if executable.is_relative_to(Path.cwd()) else str(executable)
    )


def describe_trial(t: FrozenTrial) -> str:
    """One line: number, state, value (the last reported for a pruned trial), parameters, duration,
    the steps it reported (epochs, for a task that reports once an epoch), the SLURM job that ran it."""
    row = trial_row(t)
    params = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in row.params.items())
    reported = f", {row.epochs} step{'s' if row.epochs != 1 else ''}" if row.epochs else ""
    line = f"trial {t.number:3d} {row.state:8s} value={row.value} {params} ({row.duration}{reported})"
    job = job_record(t.user_attrs, t.number) or {}
    if job.get("slurm_job_id"):
        line += f" [SLURM job {job['slurm_job_id']}]"
    return f"{line} reason: {row.reason}" if row.reason else line


def job_record(user_attrs: dict[str, Any], number: int) -> dict[str, Any] | None:
    """What trial `number`'s own job recorded (JOB_ATTR; not what its failed predecessor's job
    did, copied with the user attrs into a retry), or None."""
    record = user_attrs.get(JOB_ATTR)
    return record if isinstance(record, dict) and record.get("trial") == number else None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def describe_states(study: optuna.Study) -> str:
    """Its trials counted by state: "3 COMPLETE, 1 PRUNED", or "no trials"."""
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"


def study_names(storage: BaseStorage) -> list[str]:
    return optuna.study.get_all_study_names(storage)


LATEST = "latest"


def load_study(name: str, storage: BaseStorage, where: str) -> optuna.Study:
    """The study called `name`; `latest` (unless a study has that name) is the one whose last
    completed trial ended most recently."""
    if name == LATEST and name not in study_names(storage):
        name = _latest(storage, where)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        present = ", ".join(study_names(storage)) or "none"
        raise StudyNotFoundError(f"no study {name!r} in {where}; studies present: {present}") from None


def best_trials(study: optuna.Study, storage: BaseStorage, where: str) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several); an error when none has completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        present = ", ".join(study_names(storage)) or "none"
        raise StudyNotFoundError(
            f"study {study.study_name!r} in {where} has no completed trial yet; studies present: {present}"
        )
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def best_params(trial: FrozenTrial) -> dict[str, Any]:
    """The values that reproduce `trial`: sampled, and fixed by its sweep (recorded as user attrs;
    they win for a retry whose queued parameter the resuming sweep fixed)."""
    fixed = trial.user_attrs.get(FIXED_PARAMS_ATTR, {})
    return {**trial.params, **fixed}


def trained_values(trial: FrozenTrial) -> dict[str, Any]:
    """Every value `trial` ran with that is known, as dotted keys without `+`: what its task
    recorded (CONFIG_ATTR), then what the sweep fixed and sampled."""
    fixed, config = trial.user_attrs.get(FIXED_PARAMS_ATTR, {}), trial.user_attrs.get(CONFIG_ATTR, {})
    for name, record in ((FIXED_PARAMS_ATTR, fixed), (CONFIG_ATTR, config)):
        if not isinstance(record, dict):
            raise StudyError(
                f"trial {trial.number}'s user attr {name!r} is damaged ({str(record)[:60]!r}); "
                "expected a mapping of config keys to values, as the sweep and its task record it"
            )
    values = {**_dotted(config), **trial.params, **{k: as_typed(v) for k, v in fixed.items()}}
    return {k.lstrip("+"): v for k, v in values.items()}


def as_typed(value: Any) -> Any:
    """A fixed value as the stock sweeper records it ("3", "0.5"), read as Hydra reads the override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(value, str):
        return value
    [override] = OverridesParser.create().parse_overrides([f"key={value}"])
    return override.value()


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _latest(storage: BaseStorage, where: str) -> str:
    """The study whose last COMPLETE trial ended most recently: the one a sweep just finished."""
    ended: dict[str, datetime] = {}
    for name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        times = [t.datetime_complete for t in complete if t.datetime_complete is not None]
        if times:
            ended[name] = max(times)
    if not ended:
        raise StudyNotFoundError(f"no study in {where} has a completed trial yet, so none is the latest")
    return max(ended, key=ended.__getitem__)


# The columns of a study's trial table, as `python -m pruning_optuna_sweeper trials` and `report` show them.
TRIAL_COLUMNS = ("trial", "state", "value", "epochs", "duration", "params")


@dataclass(frozen=True)
class TrialRow:
    """One trial as a row of text cells; `epochs` counts its reported steps (intermediate values)."""

    number: int
    state: str
    value: str
    epochs: int
    duration: str
    params: dict[str, str]
    reason: str

    def cells(self) -> tuple[str, ...]:
        params = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.params.items())
        return (str(self.number), self.state, self.value, str(self.epochs), self.duration, params)


def trial_row(t: FrozenTrial) -> TrialRow:
    if t.state == TrialState.PRUNED and t.intermediate_values:  # its last reported value
        step = max(t.intermediate_values)
        value = f"{t.intermediate_values[step]:.4f} at step {step}"
    elif t.values is not None:
        value = " ".join(f"{v:.4f}" for v in t.values)
    else:
        value = "-"
    return TrialRow(
        number=t.number,
        state=t.state.name,
        value=value,
        epochs=len(t.intermediate_values),
        duration=f"{t.duration.total_seconds():.1f} s" if t.duration else "-",
        params={k: _fmt(v) for k, v in t.params.items()},
        reason=t.user_attrs.get(FAIL_REASON_ATTR, "") if t.state == TrialState.FAIL else "",
    )


def trial_table(trials: list[FrozenTrial]) -> list[str]:
    """The trials as aligned text lines under a header, a failed trial's reason after its row."""
    rows = [trial_row(t) for t in trials]
    cells = [TRIAL_COLUMNS, *(r.cells() for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TRIAL_COLUMNS) - 1)]
    lines = []
    for row, cell in zip([None, *rows], cells, strict=False):
        padded = (
            c.rjust(w) if i in (0, 3) else c.ljust(w)
            for i, (c, w) in enumerate(zip(cell, widths, strict=False))
        )
        line = "  ".join(padded)
        lines.append(f"{line}  {cell[-1]}".rstrip())
        if row is not None and row.reason:
            lines.append(f"{'':>{widths[0]}}  reason: {row.reason}")
    return lines
