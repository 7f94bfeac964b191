"""A rerun of an interrupted sweep's command launches only the trials it had left.

On Ctrl-C or SIGTERM the sweep records on its study what its command had left to
launch (a user attr per command: its arguments, n_trials, the trials left); the
trials it interrupted are queued again by the loop. A later sweep of the same
study with the same arguments launches what was left, the queued trials first,
and clears the record once it has launched them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import sys
from dataclasses import dataclass

import optuna

from pruning_optuna_sweeper.study import python_command

log = logging.getLogger(__name__)
# The study's user attr of one command's interrupted sweep: RESUME_PREFIX + a hash of its arguments.
RESUME_PREFIX = "interrupted_sweep:"


@dataclass(frozen=True)
class Resume:
    attr: str  # the study's user attr for this command
    arguments: list[str]
    n_trials: int  # what the command asks for
    left: int  # what this run launches


def plan(study: optuna.Study, arguments: list[str], n_trials: int) -> Resume:
    """What this run launches: an interrupted run's trials left, for the same command, else n_trials."""
    key = json.dumps([sorted(arguments), n_trials])
    attr = RESUME_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]
    record = study.user_attrs.get(attr)
    left = record.get("left") if isinstance(record, dict) else None
    if isinstance(left, int) and 0 < left <= n_trials:
        log.info("Resuming this command's interrupted sweep: %d of its %d trials left", left, n_trials)
        return Resume(attr, sorted(arguments), n_trials, left)
    return Resume(attr, sorted(arguments), n_trials, n_trials)


def interrupted(study: optuna.Study, resume: Resume, ended: int) -> None:
    """Record what is left after `ended` trials of this run ended, and say how to launch it."""
    left = max(0, resume.left - ended)
    if left == 0:
        return
    # A storage that refuses writes now (a full disk) was already said by the loop.
    with contextlib.suppress(Exception):
        study.set_user_attr(
            resume.attr, {"arguments": resume.arguments, "n_trials": resume.n_trials, "left": left}
        )
        log.warning(
            "To launch its %d trial%s left (the interrupted ones first), rerun: %s",
            left,
            "" if left == 1 else "s",
            shlex.join([python_command(), *sys.argv]),
        )


def finished(study: optuna.Study, resume: Resume) -> None:
    """The command's trials are all launched: a later rerun starts a sweep of its own."""
    if study.user_attrs.get(resume.attr) is not None:
        study.set_user_attr(resume.attr, None)
