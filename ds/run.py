"""One training run from a validated config: load data, train, track, report."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from ds.build import build_model, optimizer_factory
from ds.checkpoint import load_checkpoint, save_checkpoint
from ds.config import validate
from ds.data import MNIST_SAMPLE, MnistData, data_options, load_mnist, normalise_images, validation_split
from ds.device import resolve_device
from ds.errors import CheckpointError
from ds.resume import Checkpointer, resumable
from ds.tracking import Outcome, RunTracker, fresh_run_dir, run_outcome, session_name
from ds.train import EpochCallback, EpochMetrics, evaluate, train

log = logging.getLogger(__name__)


def load_data(cfg: DictConfig) -> MnistData:
    return load_mnist(**data_options(cfg))


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
            threads,
            cores,
            cores,
        )


def run(
    cfg: DictConfig,
    on_epoch: Sequence[EpochCallback] = (),
    checkpoint: Path | None = None,
    on_log_dir: Callable[[Path], None] | None = None,
    outcome: Callable[[BaseException | None], Outcome] = run_outcome,
    checkpointer: Checkpointer | None = None,
) -> float:
    """Train once as `cfg` says and return the final value of its objective.

    With `checkpoint`, the model is saved there (ds/checkpoint.py) after its last
    epoch, also one stopped early (a sweep's pruned trial keeps the model it reached);
    a run whose loss diverged saves nothing. `on_log_dir` hears of the TensorBoard
    run's folder once it is made (main.py names it when a single run is interrupted).
    `outcome` names how the run ended, from the exception that ended it (None: it finished),
    for TensorBoard's HParams (a sweep's task tells a pruned trial from a failed one).
    With `checkpointer` (ds/resume.py), the training state is saved there every epoch and a
    saved one of the same config is resumed from.
    """
    validate(cfg)
    warn_about_threads(cfg.threads)
    device = resolve_device(cfg.device)  # before the data: a missing GPU is reported at once
    torch.set_num_threads(cfg.threads)
    data = load_data(cfg)
    p = cfg.params
    log.info(
        "data: %s; params: lr=%g batch_size=%d epoch_count=%d; device: %s",
        data.identity,
        p.lr,
        p.batch_size,
        p.epoch_count,
        device,
    )
    if p.batch_size > len(data.train_y):
        log.warning(
            "params.batch_size=%d is more than the %d training examples of %s: each epoch is one batch of "
            "the whole training set, one optimizer step an epoch",
            p.batch_size,
            len(data.train_y),
            data.identity.name,
        )

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    log_dir = fresh_run_dir(Path(cfg.paths.log) / cfg.run_name)
    if on_log_dir is not None:
        on_log_dir(log_dir)
    reached: list[EpochMetrics] = []
    ended: BaseException | None = None
    resume, on_state = (None, None) if checkpointer is None else resumable(checkpointer, cfg, data.identity)
    with RunTracker(log_dir) as tracker:
        try:
            train(
                data,
                model,
                optimizer_factory(cfg.optimizer, lr=p.lr),
                batch_size=p.batch_size,
                epoch_count=p.epoch_count,
                seed=cfg.seed,
                device=device,
                objective=cfg.objective,
                progress=cfg.progress,
                on_epoch=[reached.append, lambda m: log.info(m.summary()), tracker.log_epoch, *on_epoch],
                resume=resume,
                on_state=on_state,
            )
        except BaseException as error:
            ended = error
            raise
        finally:
            # Also for a pruned or failed run: its last epoch is what it reached, its outcome the error.
            tracker.log_hparams(
                {
                    "lr": p.lr,
                    "batch_size": p.batch_size,
                    "epoch_count": p.epoch_count,
                    "epochs_trained": reached[-1].epoch if reached else 0,
                    "model": model_name(cfg),
                    "hidden": hidden if isinstance(hidden := cfg.model.hidden, int) else str(list(hidden)),
                    "optimizer": optimizer_name(cfg),
                    "seed": cfg.seed,
                    "data": data.identity.name,
                    "device": device.type,
                    "objective": cfg.objective,
                },
                outcome(ended),
                session_name(log_dir.relative_to(cfg.paths.log).as_posix()),  # -2 where the name was taken
            )
            if reached:
                last = reached[-1]
                tracker.log_confusion(last.confusion, last.epoch)
                if checkpoint is not None and math.isfinite(last.train_loss):
                    save_checkpoint(checkpoint, model, cfg, last.as_dict(), data.identity)
                    log.info("model saved: %s", checkpoint)
    last = reached[-1]
    log.info("final %s %.4f; TensorBoard run: %s", cfg.objective.replace("_", " "), last.objective, log_dir)
    return last.objective


def model_name(cfg: DictConfig) -> str:
    return str(cfg.model._target_).rsplit(".", 1)[1]


def optimizer_name(cfg: DictConfig) -> str:
    return str(cfg.optimizer._target_).rsplit(".", 1)[1]


def evaluate_saved(cfg: DictConfig, path: str | os.PathLike[str] | None = None) -> float:
    """`python main.py evaluate=<model.pt>`: the saved model's test accuracy on `cfg`'s data, no training.

    The model is built from the file's own config; the data comes from this
    run's `paths.data` and must be the data the model was trained on. `path`:
    another file than `cfg.evaluate` (best_of_model's copy of a trial's model).
    """
    validate(cfg)
    path = cfg.evaluate if path is None else str(path)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    saved = load_checkpoint(path)
    try:
        model = saved.build_model()
    except CheckpointError as e:
        raise CheckpointError(f"evaluate={str(path)!r}: {e}") from None
    data = load_data(cfg)
    if data.identity != saved.data:
        raise CheckpointError(
            f"evaluate={path!r} was trained on {saved.data}, but paths.data={cfg.paths.data!r} gives "
            f"{data.identity}; expected the data it was trained on ({where_trained(saved)})"
        )
    model.to(device)
    accuracy, _ = evaluate(model, data.test_x.to(device), data.test_y.to(device))
    val = ""
    if saved.config.get("objective") == "val_accuracy":  # it was trained without these digits
        held_out = validation_split(len(data.train_y))[1]
        images = normalise_images(data.train_images.index_select(0, held_out)).to(device)
        val = f", Val Accuracy: {evaluate(model, images, data.train_y[held_out].to(device))[0]:.4f}"
    log.info(
        "%s (%s, %s epochs, on %s): Test Accuracy: %.4f%s",
        path,
        saved.config["model"]["_target_"].rsplit(".", 1)[1],
        saved.metrics.get("epoch"),
        data.identity,
        accuracy,
        val,
    )
    return accuracy


def where_trained(saved) -> str:
    if saved.data.name == MNIST_SAMPLE.name:
        return "the bundled sample: paths.data=data/sample"
    return f"its run had paths.data={saved.config.get('paths', {}).get('data')!r}"
