"""Save a trained model with what it takes to use it again; load and check it.

A checkpoint (model.pt) is a plain dictionary written by torch.save: the
model's state dict, the run's resolved config as plain data, its final
metrics and the identity of the data it was trained on. It holds no pickled
objects, so `load_checkpoint` reads it with `weights_only=True`, and the
model is rebuilt from the file's own config through ds/build.py, which only
builds the classes ds/config.py lists. The functions are the reusable part:
a single run saves into its Hydra output folder, a sweep can save a trial's
model to any path (e.g. to upload it as an Optuna artifact).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ds.build import build_model
from ds.datasets import DatasetIdentity
from ds.errors import CheckpointError, first_line

FORMAT = 1
# Not saved: a storage URL may carry a password (README: Secrets), and a
# sweep's trial keys say nothing about the model.
_LEFT_OUT = ("storage", "sweep")


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]  # the run's resolved config, less _LEFT_OUT
    metrics: dict[str, Any]  # EpochMetrics.as_dict() of the last epoch
    data: DatasetIdentity

    def build_model(self) -> nn.Module:
        """The model as trained: built from the file's config, weights loaded, on the CPU."""
        try:
            model = build_model(self.config["model"])
        except CheckpointError as e:
            raise CheckpointError(f"its config's model cannot be built: {e}") from None
        except Exception as e:  # instantiate's and the class's own errors (a negative size, say)
            raise CheckpointError(
                f"its config's model cannot be built ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                "expected the config of a model.pt a run wrote"
            ) from None
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise CheckpointError(
                f"its weights do not fit the model its config describes ({first_line(e)})"
            ) from None
        return model.eval()


def plain_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The config resolved into plain data, without the keys a checkpoint must not carry."""
    plain: Any = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return {k: v for k, v in dict(plain).items() if k not in _LEFT_OUT}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: DictConfig | Mapping[str, Any],
    metrics: Mapping[str, Any],
    data: DatasetIdentity,
) -> Path:
    """Write `model` with its config, final metrics and data identity to `path`, atomically.

    The weights are copied to the CPU, so the file loads on any machine. The
    file appears complete or not at all (written beside it, then renamed).
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "config": plain_config(config),
        "metrics": dict(metrics),
        "data": asdict(data),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(payload, f)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a file `save_checkpoint` wrote; CheckpointError naming the path if it is not one."""
    where = f"evaluate={str(path)!r}"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no such file; expected the path of a model.pt a run wrote") from None
    except Exception as e:  # torch.load raises many types for a file that is not its own
        raise CheckpointError(
            f"{where}: not a model file torch can read ({first_line(e)}); expected a model.pt a run wrote"
        ) from None
    keys = ("format", "state_dict", "config", "metrics", "data")
    if not isinstance(payload, dict) or any(k not in payload for k in keys):
        raise CheckpointError(
            f"{where}: a torch file, but not a model.pt of this project (it lacks {', '.join(keys)})"
        )
    if payload["format"] != FORMAT:
        raise CheckpointError(
            f"{where}: written in format {payload['format']!r}; this version reads format {FORMAT}"
        )
    try:
        data = DatasetIdentity(**payload["data"])
    except TypeError as e:
        raise CheckpointError(f"{where}: its data identity is unreadable ({e})") from None
    config, weights = payload["config"], payload["state_dict"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(
            f"{where}: its config is {type(config).__name__}"
            f"{'' if not isinstance(config, dict) else ' without a model mapping'}; "
            "expected the run's config with its model, as a run writes it"
        )
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise CheckpointError(
            f"{where}: its state_dict is not a mapping of names to tensors; expected a model.pt a run wrote"
        )
    broken = [name for name, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise CheckpointError(
            f"{where}: its weights hold NaN or infinite values ({', '.join(broken)}), so its predictions "
            "mean nothing; expected the model of a run that did not diverge"
        )
    return Checkpoint(weights, config, payload["metrics"], data)
