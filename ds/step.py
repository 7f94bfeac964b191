"""LinearNet's Adam training step with hand-derived gradients, no autograd.

For a 784 -> hidden -> 10 network a step's arithmetic is three small matrix
products. Autograd's graph and torch.optim's per-step bookkeeping cost more
than that here (about 0.4 ms a step, half of an epoch), so this module does
the same step in the fewest tensor operations: the gradients of
cross-entropy through two linear layers and a ReLU have a closed form, and
Adam is one call of torch's fused Adam kernel once every parameter lives in
one flat buffer. tests/test_step.py checks the updates against autograd and
torch.optim.Adam; benchmarks/bench.py measures the epoch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ds.model import LinearNet


class LinearNetAdam:
    """Trains `model` in place: `step` is loss.backward() plus Adam.step().

    Same update as `torch.optim.Adam(model.parameters(), lr)` on the mean
    cross-entropy of the batch (no weight decay, no amsgrad).
    """

    def __init__(
        self, model: LinearNet, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        first, second = model.layers[0], model.layers[2]
        if not (isinstance(first, nn.Linear) and isinstance(second, nn.Linear)):
            raise TypeError("LinearNetAdam needs LinearNet's Linear-ReLU-Linear layers.")
        parameters = [first.weight, first.bias, second.weight, second.bias]
        self.flat = torch.cat([p.detach().reshape(-1) for p in parameters])
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        values = _views(self.flat, parameters)
        # The model's parameters become views of the flat buffer, so the model
        # always evaluates the values being trained.
        with torch.no_grad():
            for parameter, view in zip(parameters, values):
                parameter.data = view
        self.w1, self.b1, self.w2, self.b2 = values
        self.g_w1, self.g_b1, self.g_w2, self.g_b2 = _views(self.grad, parameters)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.steps = torch.zeros(())  # a tensor: the fused kernel reads it
        self._minus_one = torch.full((0, 1), -1.0)

    def step(self, x: Tensor, y: Tensor, true_log_prob: Tensor, correct: Tensor) -> None:
        """One step on batch (x float [B, 784], y int64 [B]).

        Writes each example's log-probability of its true class into
        `true_log_prob` (float [B]) and whether the prediction was right into
        `correct` (bool [B]), as computed before the update. No tensor here
        requires grad, so autograd records nothing.
        """
        n = len(y)
        hidden = torch.addmm(self.b1, x, self.w1.t()).relu_()
        logits = torch.addmm(self.b2, hidden, self.w2.t())
        torch.eq(logits.argmax(dim=1), y, out=correct)
        labels = y.unsqueeze(1)
        log_probs = torch.log_softmax(logits, dim=1)
        torch.gather(log_probs, 1, labels, out=true_log_prob.unsqueeze(1))

        # d(mean cross-entropy)/d(logits) = (softmax - one_hot(y)) / n
        g_logits = log_probs.exp_().scatter_add_(1, labels, self._minus_ones(n)).mul_(1.0 / n)
        torch.mm(g_logits.t(), hidden, out=self.g_w2)
        torch.sum(g_logits, dim=0, out=self.g_b2)
        g_hidden = torch.mm(g_logits, self.w2).mul_(hidden > 0)
        torch.mm(g_hidden.t(), x, out=self.g_w1)
        torch.sum(g_hidden, dim=0, out=self.g_b1)
        self._adam()

    def _adam(self) -> None:
        # torch.optim.Adam(fused=True)'s kernel on the one flat buffer: one
        # operation instead of seven (about 20 us a step instead of 65), without
        # the optimizer's per-step Python (the public step() takes 110 us).
        self.steps.add_(1)
        torch._fused_adam_(
            [self.flat],
            [self.grad],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [self.steps],
            amsgrad=False,
            lr=self.lr,
            beta1=self.beta1,
            beta2=self.beta2,
            weight_decay=0.0,
            eps=self.eps,
            maximize=False,
        )

    def _minus_ones(self, n: int) -> Tensor:
        if len(self._minus_one) < n:
            self._minus_one = torch.full((n, 1), -1.0)
        return self._minus_one[:n]


def _views(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    views, offset = [], 0
    for tensor in like:
        size = math.prod(tensor.shape)
        views.append(flat[offset : offset + size].view(tensor.shape))
        offset += size
    return views
