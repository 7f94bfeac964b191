"""What differs between the Hydra releases the distribution supports (1.3.2 and later 1.3.x, the 1.4
line), behind one call each, so that the rest of the code reads the same on both.

Hydra 1.4 added an execution whitelist to `instantiate` and a `replace=` argument to
`ConfigStore.store` (which warns on a collision without it); Hydra 1.3 has neither, runs any
`_target_` a config names and replaces a stored config silently. Both are found out from the
public signatures, not from version numbers. OmegaConf 2.4 (Hydra 1.4's) renamed its resolver
registration.
"""

import functools
import inspect
from collections.abc import Sequence
from typing import Any


@functools.cache
def _accepts(function: Any, parameter: str) -> bool:
    return parameter in inspect.signature(function).parameters


def hydra_whitelists_targets() -> bool:
    """Whether this Hydra has an execution whitelist (1.4), and so warns on every config-built
    object without one, Hydra's own callbacks included."""
    from hydra.utils import instantiate

    return _accepts(instantiate, "_execution_whitelist_")


def instantiate_trusted(config: Any, whitelist: str | Sequence[str], **kwargs: Any) -> Any:
    """hydra.utils.instantiate, limited to the `whitelist` targets where Hydra can limit it (1.4);
    Hydra 1.3 has no whitelist and builds what the config names, as any 1.3 app does."""
    from hydra.utils import instantiate

    if hydra_whitelists_targets():
        kwargs["_execution_whitelist_"] = list(whitelist) if not isinstance(whitelist, str) else whitelist
    return instantiate(config, **kwargs)


def store_config(*, group: str, name: str, node: Any, provider: str) -> None:
    """ConfigStore.store, replacing an entry of the same name without a warning: a launcher's worker
    stores the plugin's configs again after receiving the sweep's ConfigStore with its jobs."""
    from hydra.core.config_store import ConfigStore

    store: Any = ConfigStore.instance().store
    replace = {"replace": True} if _accepts(store, "replace") else {}
    store(group=group, name=name, node=node, provider=provider, **replace)


def register_resolver(name: str, resolver: Any) -> None:
    """An OmegaConf resolver, replacing one of the same name: OmegaConf 2.4's `register_resolver`
    (which deprecates `register_new_resolver`), or 2.3's `register_new_resolver` (its
    `register_resolver` is the legacy one, without `replace`)."""
    from omegaconf import OmegaConf

    if _accepts(OmegaConf.register_resolver, "replace"):
        OmegaConf.register_resolver(name, resolver, replace=True)
    else:
        OmegaConf.register_new_resolver(name, resolver, replace=True)


def retry_callback() -> Any:
    """Optuna's callback that queues a heartbeat-stale trial again: RetryHeartbeatStaleTrialCallback
    since Optuna 4.9, RetryFailedTrialCallback before (a deprecated alias after)."""
    import optuna

    return getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or (
        optuna.storages.RetryFailedTrialCallback
    )


def stale_trial_callback_argument() -> str:
    """RDBStorage's argument for that callback: heartbeat_stale_trial_callback since Optuna 4.9,
    failed_trial_callback before."""
    from optuna.storages import RDBStorage

    new = "heartbeat_stale_trial_callback"
    return new if _accepts(RDBStorage, new) else "failed_trial_callback"


def update_finished_trial_error() -> type[Exception]:
    """What a storage raises on a write to a finished trial: UpdateFinishedTrialError since Optuna
    4.4 (a RuntimeError), a plain RuntimeError before."""
    import optuna

    return getattr(optuna.exceptions, "UpdateFinishedTrialError", RuntimeError)
