"""What an app may add to its sweeps: every hook is optional.

An app subclasses `SweepHooks` and names the class in its sweeper config:

    hydra:
      sweeper:
        hooks:
          _target_: my_app.hooks.MyHooks

The sweeper calls the hooks in the sweep's process, before the first trial
(identity, study name, checks) and after the last (the closing hint). An app
that names no hooks gets the stock sweeper's behaviour.
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig


class SweepHooks:
    def study_identity(self, config: DictConfig) -> dict[str, Any] | None:
        """What every trial of one study must share (the dataset, say), as a small JSON-able dict.

        Recorded on the study; a later sweep of that study with another
        identity is refused before any trial, since its results would not
        compare. None: nothing recorded or checked.
        """
        return None

    def study_name(self, config: DictConfig, identity: dict[str, Any] | None) -> str | None:
        """The study's name when `hydra.sweeper.study_name` is null (Optuna then makes one up)."""
        return None

    def check_search_space(
        self, ranges: dict[str, optuna.distributions.BaseDistribution], fixed: dict[str, str]
    ) -> None:
        """Raise ValueError for a range or a fixed value the app's sweeps must not have (a range over
        where or on what data a trial runs, a key the sweep sets itself)."""

    def check_trial_config(self, config: DictConfig) -> None:
        """Raise ValueError when `config`, a trial's composed config, is one the task would refuse.

        Called before any trial with the config at each end of every range
        (and each choice), so that a range reaching a bad value fails at once
        and names the range, not in trial 7.
        """

    def best_command(
        self, study: optuna.Study, best: optuna.trial.FrozenTrial, config: DictConfig
    ) -> str | None:
        """A shell command that trains with the best trial's parameters, shown when the sweep ends."""
        return None


def overridden(hooks: SweepHooks, name: str) -> bool:
    """Whether the app's hooks define `name` (else the sweeper skips the work it needs)."""
    return getattr(type(hooks), name) is not getattr(SweepHooks, name)
