"""One training run from a validated config: load data, train, track, report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


def run(cfg: DictConfig, on_epoch: Sequence[EpochCallback] = ()) -> float:
    """Train once as `cfg` says and return the final test accuracy."""
    validate(cfg)
    torch.set_num_threads(cfg.threads)
    data = load_data(cfg)
    p = cfg.params
    log.info("data: %s; params: lr=%g batch_size=%d epoch_count=%d", data.identity, p.lr, p.batch_size, p.epoch_count)

    log_dir = fresh_run_dir(Path(cfg.paths.log) / cfg.run_name)
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
