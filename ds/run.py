"""One training run from a validated config: load data, train, track, report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from ds.config import validate
from ds.data import MnistData, load_mnist
from ds.tracking import RunTracker, fresh_run_dir
from ds.train import EpochCallback, EpochMetrics, train

log = logging.getLogger(__name__)


def load_data(cfg: DictConfig) -> MnistData:
    return load_mnist(
        Path(cfg.paths.data),
        Path(cfg.paths.cache),
        download=cfg.data.download,
        mirrors=list(cfg.data.mirrors),
        timeout_s=cfg.data.timeout_s,
        sample_fallback=cfg.data.sample_fallback,
    )


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def warn_about_threads(threads: int) -> None:
    """More torch threads than cores take turns on them: each epoch gets slower, not faster
    (200 threads on 2 cores made an epoch of the sample take 40 s instead of 0.03 s)."""
    cores = usable_cores()
    if threads > cores:
        log.warning(
            "threads=%d is more than the %d cores this process may run on (os.sched_getaffinity): the "
            "threads take turns, which makes every epoch slower; expected threads=%d or fewer here",
            threads, cores, cores,
        )


def run(
    cfg: DictConfig, on_epoch: Sequence[EpochCallback] = (), on_log_dir: Callable[[Path], None] | None = None
) -> float:
    """Train once as `cfg` says and return the final test accuracy.

    `on_log_dir` hears of the TensorBoard run's folder once it is made (main.py names it when a
    single run is interrupted)."""
    validate(cfg)
    warn_about_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    data = load_data(cfg)
    p = cfg.params
    log.info("data: %s; params: lr=%g batch_size=%d epoch_count=%d", data.identity, p.lr, p.batch_size, p.epoch_count)
    if p.batch_size > len(data.train_y):
        log.warning(
            "params.batch_size=%d is more than the %d training examples of %s: each epoch is one batch of "
            "the whole training set, one Adam step an epoch",
            p.batch_size, len(data.train_y), data.identity.name,
        )

    log_dir = fresh_run_dir(Path(cfg.paths.log) / cfg.run_name)
    if on_log_dir is not None:
        on_log_dir(log_dir)
    reached: list[EpochMetrics] = []
    with RunTracker(log_dir) as tracker:
        try:
            train(
                data,
                lr=p.lr,
                batch_size=p.batch_size,
                epoch_count=p.epoch_count,
                hidden=cfg.model.hidden,
                seed=cfg.seed,
                progress=cfg.progress,
                on_epoch=[reached.append, lambda m: log.info(m.summary()), tracker.log_epoch, *on_epoch],
            )
        finally:
            # Also for a pruned or failed run: its last epoch is what it reached.
            if reached:
                last = reached[-1]
                tracker.log_hparams(
                    {
                        "lr": p.lr,
                        "batch_size": p.batch_size,
                        "epoch_count": p.epoch_count,
                        "hidden": cfg.model.hidden,
                        "seed": cfg.seed,
                        "data": data.identity.name,
                    },
                    {
                        "hparam/test_accuracy": last.test_accuracy,
                        "hparam/train_accuracy": last.train_accuracy,
                        "hparam/epochs_trained": float(last.epoch),
                    },
                )
                tracker.log_confusion(last.confusion, last.epoch)
    accuracy = reached[-1].test_accuracy
    log.info("final test accuracy %.4f; TensorBoard run: %s", accuracy, log_dir)
    return accuracy
