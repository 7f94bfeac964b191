"""Pruning for Lightning apps: a callback that reports a monitored metric and stops the trainer.

    from pruning_optuna_sweeper.lightning import PruningCallback

    trainer = Trainer(callbacks=[PruningCallback(monitor="val/acc", mode="max")])

or, in an app's callbacks config group:

    pruning:
      _target_: pruning_optuna_sweeper.lightning.PruningCallback
      monitor: val/acc
      mode: max

Modelled on optuna-integration's PyTorchLightningPruningCallback, with two differences. The trial
is the sweep's (`current_trial()`), so the callback takes no trial and can be a `_target_` in a
config; outside a sweep it does nothing. And a trial the pruner stops is not raised as
TrialPruned (which a Lightning app logs as a crash): the trainer is told to stop, the trial is
marked pruned, the task returns as usual and the sweep records the trial PRUNED with its last
reported value. Under DDP only global rank 0 reports and asks the pruner; its answer is broadcast
and every rank stops with it.

This module imports Lightning (`lightning`, else `pytorch_lightning`); nothing else in the
distribution imports this module, so the distribution does not depend on Lightning.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:
    try:
        from pytorch_lightning import Callback, LightningModule, Trainer  # type: ignore[assignment]
    except ImportError:
        raise ImportError(
            "pruning_optuna_sweeper.lightning needs Lightning: pip install lightning "
            "(or the distribution's extra: pip install 'pruning-optuna-sweeper[lightning]')"
        ) from None

from pruning_optuna_sweeper.trial import NoTrial, SweepTrial, current_trial, trial_job

log = logging.getLogger(__name__)
MODES = {"min": "minimize", "max": "maximize"}


class PruningCallback(Callback):
    """Report `monitor` at the end of each validation epoch; stop the trainer when the pruner says so.

    Args:
        monitor: the name of a logged metric (`self.log("val/acc", ...)`), as in
            `trainer.callback_metrics`.
        mode: "max" or "min": which way the metric improves. It must agree with the study's
            direction (a trial is refused otherwise: the pruner would stop the best trials);
            None takes the study's.
    """

    def __init__(self, monitor: str, mode: str | None = None) -> None:
        super().__init__()
        if mode is not None and mode not in MODES:
            raise ValueError(f"PruningCallback(mode={mode!r}): expected 'max', 'min' or None")
        self.monitor = monitor
        self.mode = mode
        self._trial: SweepTrial | NoTrial = NoTrial()
        self._warned_missing = False
        # Taken in the job's process: a `ddp_spawn` rank 0 has no Hydra state to find its trial by.
        self._job = trial_job()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Only rank 0 is the sweep's job; other DDP ranks follow its decisions.
        self._trial = current_trial(self._job) if trainer.is_global_zero else NoTrial()
        direction = getattr(self._trial, "direction", None)
        if self._trial and self.mode is not None and direction not in (None, MODES[self.mode]):
            raise ValueError(
                f"PruningCallback(monitor={self.monitor!r}, mode={self.mode!r}) reports a metric that "
                f"improves as it {'grows' if self.mode == 'max' else 'shrinks'}, but study "
                f"{self._trial.study_name!r} is set to {direction} it; expected "
                f"hydra.sweeper.direction={MODES[self.mode]}, or mode="
                f"{'max' if direction == 'maximize' else 'min'}"
            )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero and self._trial:
            prune = self._report(trainer)
        # Every rank calls broadcast, the same number of times: rank 0's answer reaches them all.
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True

    def _report(self, trainer: Trainer) -> bool:
        """Report the metric at this epoch; whether the pruner stops the trial (marked pruned then)."""
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if not self._warned_missing:
                self._warned_missing = True
                logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
                warnings.warn(
                    f"PruningCallback(monitor={self.monitor!r}): no such metric is logged (logged: "
                    f"{logged}); the trial is not reported, so it cannot be pruned",
                    stacklevel=2,
                )
            return False
        epoch = trainer.current_epoch
        self._trial.report(_number(value), epoch)
        if not self._trial.should_prune():
            return False
        self._trial.mark_pruned()
        log.info(
            "Trial %s pruned at epoch %d (%s=%.4g): the trainer stops",
            self._trial.number,
            epoch,
            self.monitor,
            _number(value),
        )
        return True


def _number(value: Any) -> float:
    """A logged metric (a tensor of one element, or a number) as a float."""
    return float(value.item() if hasattr(value, "item") else value)
