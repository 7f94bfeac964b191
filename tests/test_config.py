"""ds.config.validate on configs composed by Hydra from conf/, as main.py and a sweeper get them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from ds.config import MAX_SEED, ConfigError, memory_limit, register_configs, training_bytes, validate
from tests.cli import CONF


def composed(overrides: list[str], with_hydra: bool = False) -> Any:
    """conf/config.yaml with `overrides`, composed by Hydra; `with_hydra`: the `hydra` node too, as a
    sweeper's task config has it."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF)):
        return compose("config", overrides=overrides, return_hydra_config=with_hydra)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+foo=1",
            "foo=1: not a key of the training config (ds/config.py), which the run would ignore; "
            "expected a key it has (none is near; here: params, paths, data, model, optimizer, device,",
        ),
        (
            "+params.lrr=0.5",
            "params.lrr=0.5: not a key of the training config (ds/config.py), which the run "
            "would ignore; expected a key it has (nearest: params.lr)",
        ),
        ("++params.lrr=0.5", "params.lrr=0.5: not a key"),
        (
            "+lr=0.5",
            "lr=0.5: not a key of the training config (ds/config.py), which the run would ignore; "
            "expected a key it has (nearest: params.lr)",
        ),
        ("++model.hiden=8", "(nearest: model.hidden)"),
        ("~seed", "seed is missing (removed with ~seed?); expected a value for it"),
    ],
)
def test_a_key_the_schema_lacks_or_a_removed_one_is_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(composed([override]))


def test_hydra_s_own_keys_and_a_params_group_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "mine.yaml").write_text("lr: 0.01\nbatch_size: 32\nepoch_count: 2\n")
    cfg = composed(
        [
            f"hydra.searchpath=[file://{tmp_path}]",
            "params=mine",
            "+hydra.job.env_set.MY_VAR=1",
            "params.lr=0.02",
        ],
        with_hydra=True,
    )

    validate(cfg)  # the hydra node, as in a sweeper's task config, is Hydra's
    assert (cfg.params.lr, cfg.params.batch_size, cfg.hydra.job.env_set.MY_VAR) == (0.02, 32, "1")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            f"seed={2**64}",
            f"seed={2**64}: expected an integer in 0..{2**64 - 1} (2**64-1), the seeds torch takes",
        ),
        ("seed=-1", "seed=-1: expected an integer in 0..18446744073709551615"),
        ("params.epoch_count=1001", "params.epoch_count=1001: expected an integer in 1..1000"),
        ("threads=1025", "threads=1025: expected an integer in 1..1024"),
        (
            "model.hidden=100000000",
            "model.hidden=100000000: expected a width whose training fits in memory: it "
            "needs about 8,706.7 GiB (the parameters, their gradients and Adam's state, "
            "and the activations of a "
            "batch and of the test split), more than ",
        ),
    ],
)
def test_values_beyond_what_torch_or_the_machine_takes_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(composed([override]))


def test_the_limits_are_torch_s_and_the_machine_s() -> None:
    import torch

    torch.manual_seed(MAX_SEED)  # the largest seed validate lets through is one torch takes
    with pytest.raises(ValueError, match="Overflow"):
        torch.manual_seed(MAX_SEED + 1)
    for value in ("seed=0", f"seed={MAX_SEED}", "params.epoch_count=1000", "threads=1024"):
        validate(composed([value]))

    limit, _ = memory_limit()
    assert training_bytes(32, 64) < 2**30  # the default model: well under a GiB
    with pytest.raises(ConfigError) as refused:
        validate(composed(["model.hidden=100000000", "params.batch_size=128"]))
    widest = int(
        re.search(r"at most model.hidden=(\d+) with params.batch_size=128 here", str(refused.value))[1]
    )
    assert training_bytes(widest, 128) <= limit < training_bytes(widest + 1, 128)
    validate(composed([f"model.hidden={widest}", "params.batch_size=128"]))
