"""Build the model and the optimizer from their `_target_` configs.

The configs (conf/model/, conf/optimizer/) go through `hydra.utils.instantiate`,
as in lightning-hydra-template: the optimizer's is a partial (`_partial_: true`)
completed here with the parameters and the learning rate, `params.lr`, the one
key a sweep tunes. Only the classes ds/config.py lists can be built, also from
a saved model's config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ds.config import MODEL_SCHEMAS, OPTIMIZER_SCHEMAS
from ds.errors import CheckpointError

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def build_model(config: DictConfig | Mapping[str, Any]) -> nn.Module:
    """A fresh model as `config` describes it (seed torch first for repeatable weights)."""
    node = _plain(config)
    if node.get("_target_") not in MODEL_SCHEMAS:
        raise CheckpointError(
            f"model._target_={node.get('_target_')!r}: expected one of {', '.join(MODEL_SCHEMAS)}"
        )
    return instantiate(node, _execution_whitelist_=tuple(MODEL_SCHEMAS))


@dataclass(frozen=True, eq=False)
class OptimizerSpec:
    """A configured optimizer not yet built: its class and the options it is given (lr included).

    Called with the parameters, it builds the optimizer. Its settings are known
    before that: the fast path (ds/step.py) reads them and builds none, which
    spares the process the import of torch's compiler stack that the first
    torch.optim optimizer sets off. An option the class does not take is refused
    here, as building would. Where the class has a fused implementation for the
    parameters' device (torch.optim.Adam, AdamW and SGD on CPU and CUDA), it is
    used: one kernel for every parameter instead of a loop over them, the
    fastest on this project's small models (benchmarks/bench.py measures it).
    """

    cls: type[torch.optim.Optimizer]
    options: Mapping[str, Any]

    def __post_init__(self) -> None:
        inspect.signature(self.cls).bind([], **self.options)  # TypeError, as the class would raise

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The configured options over the class's defaults (`fused` is chosen when it is built)."""
        parameters = inspect.signature(self.cls).parameters.values()
        return {**{p.name: p.default for p in parameters if p.default is not p.empty}, **self.options}

    def __call__(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        parameters = list(parameters)
        device = parameters[0].device.type if parameters else "cpu"
        fused = _has_fused(self.cls, device) and all(p.dtype.is_floating_point for p in parameters)
        return self.cls(parameters, **{**({"fused": True} if fused else {}), **self.options})


def optimizer_factory(config: DictConfig | Mapping[str, Any], lr: float) -> OptimizerSpec:
    """The configured optimizer with `lr`, to be built with the model's parameters."""
    node = _plain(config)
    if node.get("_target_") not in OPTIMIZER_SCHEMAS:
        raise CheckpointError(
            f"optimizer._target_={node.get('_target_')!r}: expected one of {', '.join(OPTIMIZER_SCHEMAS)}"
        )
    configured = instantiate({**node, "_partial_": True}, _execution_whitelist_=tuple(OPTIMIZER_SCHEMAS))
    options = dict(configured.keywords)
    if "betas" in options:  # a YAML list; torch's kernels read a tuple
        options["betas"] = tuple(options["betas"])
    return OptimizerSpec(configured.func, {**options, "lr": lr})


def _has_fused(optimizer_class: type, device: str) -> bool:
    """The class takes `fused=True` (nanoGPT's check) on a device torch fuses for."""
    return "fused" in inspect.signature(optimizer_class).parameters and device in ("cpu", "cuda")


def _plain(config: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return dict(config)
