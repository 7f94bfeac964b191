"""The hand-derived step against autograd and torch.optim.Adam, on real digits."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from ds.data import MNIST_SAMPLE, iterate_batches, load_mnist
from ds.model import LinearNet
from ds.step import LinearNetAdam
from ds.train import NonFiniteLossError, train


@pytest.mark.slow  # steps both paths on every parametrisation
@pytest.mark.parametrize("use_kernel", [True, False], ids=["torch-fused-kernel", "public-ops"])
@pytest.mark.parametrize(("batch_size", "lr", "hidden"), [(96, 1e-3, 32), (300, 3e-2, 7)])
def test_steps_match_autograd_and_torch_adam(
    sample_dir: Path, batch_size: int, lr: float, hidden: int, use_kernel: bool
) -> None:
    """Both Adam updates of the fast path (the private kernel and its public fallback)."""
    data = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    torch.manual_seed(0)
    ours = LinearNet(hidden=hidden)
    reference = copy.deepcopy(ours)
    step = LinearNetAdam(ours, lr=lr, use_kernel=use_kernel)
    adam = torch.optim.Adam(reference.parameters(), lr=lr, foreach=False)
    loss_fn = nn.CrossEntropyLoss()

    # 8,000 digits: neither batch size divides it, so the last batch is smaller.
    batches = list(
        iterate_batches(data.train_images, data.train_y, batch_size, torch.Generator().manual_seed(1))
    )
    assert len(batches[-1][1]) < batch_size
    for x, y in batches:
        true_log_prob, correct = torch.empty(len(y)), torch.empty(len(y), dtype=torch.bool)
        step.step(x, y, true_log_prob, correct)

        logits = reference(x)
        loss = loss_fn(logits, y)
        adam.zero_grad()
        loss.backward()
        adam.step()

        torch.testing.assert_close(-true_log_prob.mean(), loss.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(correct, logits.argmax(dim=1) == y)
    for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=False):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    # The module itself evaluates the trained values: its parameters are views of the step's buffer.
    with torch.no_grad():
        torch.testing.assert_close(ours(data.test_x), reference(data.test_x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_a_diverging_run_raises_non_finite_loss(sample_dir: Path, fast: bool) -> None:
    data = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    with pytest.raises(
        NonFiniteLossError, match=r"the training loss became (nan|inf) in epoch 1 \(lr=1e\+30"
    ):
        train(
            data,
            LinearNet(32),
            partial(torch.optim.Adam, lr=1e30),
            batch_size=64,
            epoch_count=2,
            seed=0,
            allow_fast_path=fast,
        )
