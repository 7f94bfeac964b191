"""The fast path: LinearNet's Adam step with hand-derived gradients, no autograd.

For a 784 -> hidden -> 10 network a step's arithmetic is three small matrix
products. Autograd's graph and torch.optim's per-step bookkeeping cost more
than that here, so this module does the same step in the fewest tensor
operations: the gradients of cross-entropy through two linear layers and a
ReLU have a closed form, and Adam updates one flat buffer holding every
parameter. It is a specialisation: `fast_path_refusal` admits exactly
LinearNet with plain Adam on a CPU, and everything else trains through
autograd and torch.optim (ds/train.py). tests/test_step.py checks that both
paths make the same updates; benchmarks/bench.py measures them.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from ds.build import OptimizerSpec
from ds.model import LinearNet

log = logging.getLogger(__name__)

# The fast path's gradients assume exactly these modules, in this order.
LINEARNET_MODULES = (LinearNet, nn.Sequential, nn.Linear, nn.ReLU, nn.Linear)
# Adam settings the fast path reproduces: anything else in the group needs torch.optim.
_PLAIN_ADAM = {
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "capturable": False,
    "differentiable": False,
    "decoupled_weight_decay": False,
}


def fast_path_refusal(
    model: nn.Module, optimizer: torch.optim.Optimizer | OptimizerSpec, device: torch.device
) -> str | None:
    """Why the fast path cannot train `model` with `optimizer` on `device`, or None when it can.

    The whole structure is checked, not a name: the exact module types in
    order (a LinearNet whose activation was swapped or with an extra layer is
    refused), biases, float32 parameters that all train, no hooks or
    instance-level forward; the optimizer must be torch.optim.Adam itself,
    built (one group over exactly those parameters) or still an OptimizerSpec,
    without the options the fast update lacks (betas and eps are passed through).
    """
    why = _model_refusal(model, device)
    if why is not None:
        return why
    if isinstance(optimizer, OptimizerSpec):
        cls, group = optimizer.cls, optimizer.settings
    else:
        cls, group = type(optimizer), optimizer.param_groups[0]
        if len(optimizer.param_groups) != 1:
            return "the optimizer has more than one parameter group"
        if [id(p) for p in group["params"]] != [id(p) for p in model.parameters()]:
            return "the optimizer does not train exactly the model's parameters"
    if cls is not torch.optim.Adam:
        return f"the optimizer is {cls.__qualname__}, not torch.optim.Adam"
    changed = [f"{k}={group.get(k)!r}" for k, plain in _PLAIN_ADAM.items() if group.get(k, plain) != plain]
    if changed:
        return f"Adam has {', '.join(changed)}"
    if not all(isinstance(v, float) for v in (group["lr"], *group["betas"], group["eps"])):
        return "Adam's lr, betas or eps are tensors"
    lr, betas, eps = group["lr"], tuple(group["betas"]), group["eps"]
    if not (lr >= 0 and eps >= 0 and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
        return "Adam's lr, betas or eps are out of range (torch.optim.Adam says which)"
    return None


def _model_refusal(model: nn.Module, device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"the device is {device}, not a CPU"
    kinds = tuple(type(m) for m in model.modules())
    if kinds != LINEARNET_MODULES:
        return f"the model is {' > '.join(k.__name__ for k in kinds)}, not LinearNet's Linear-ReLU-Linear"
    _, _, first, _, second = model.modules()  # the kinds just checked
    if first.bias is None or second.bias is None or first.out_features != second.in_features:
        return "LinearNet's layers lack a bias or do not connect"
    if any(p.dtype != torch.float32 or not p.requires_grad for p in model.parameters()):
        return "a parameter is not a trainable float32 tensor"
    if "forward" in vars(model) or any(_has_hooks(m) for m in model.modules()):
        return "the model has hooks or its own forward, which the fast path would skip"
    return None


def _has_hooks(module: nn.Module) -> bool:
    return any(
        getattr(module, name, None)
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    )


class FlatAdam:
    """Adam on one flat float32 buffer and its gradient buffer, as torch.optim.Adam updates it.

    The update is torch's fused Adam kernel (`torch._fused_adam_`, the one
    `torch.optim.Adam(fused=True)` calls: one operation instead of seven and
    none of the optimizer's per-step Python) when a probe at first use finds
    it present and matching torch.optim.Adam; otherwise the same formula in
    public tensor operations (slower per step, still exact).
    """

    def __init__(
        self,
        flat: Tensor,
        grad: Tensor,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        use_kernel: bool | None = None,
    ) -> None:
        self.flat, self.grad = flat, grad
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.steps = torch.zeros(())  # a tensor: the fused kernel reads it
        self.count = 0  # the same, for the public-operation update (no .item())
        self.use_kernel = fused_adam_kernel_works() if use_kernel is None else use_kernel

    def step(self) -> None:
        if self.use_kernel:
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
            return
        # torch.optim.Adam's single-tensor update, in public operations.
        self.count += 1
        step = self.count
        self.exp_avg.lerp_(self.grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(self.grad, self.grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        denominator = (self.exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denominator, value=-self.lr / bias_correction1)


_KERNEL_WORKS: bool | None = None


def fused_adam_kernel_works() -> bool:
    """Whether torch's private fused Adam kernel exists here and updates as torch.optim.Adam does.

    Probed once per process: three steps on a 3-element tensor, compared with
    FlatAdam's public-operation update (torch.optim.Adam's single-tensor
    formula; tests/test_training.py holds both to torch.optim.Adam). A torch
    without the kernel, with another signature or with other arithmetic gets
    the public-operation update instead.
    """
    global _KERNEL_WORKS
    if _KERNEL_WORKS is None:
        _KERNEL_WORKS = _probe_kernel()
        if not _KERNEL_WORKS:
            log.info(
                "torch._fused_adam_ is missing or differs from torch.optim.Adam here: "
                "the fast path's Adam uses public tensor operations"
            )
    return _KERNEL_WORKS


def _probe_kernel() -> bool:
    if not callable(getattr(torch, "_fused_adam_", None)):
        return False
    start = torch.tensor([0.5, -1.5, 2.0])
    gradients = ([0.3, -0.2, 1.0], [-0.5, 0.4, 0.1], [0.25, 0.0, -2.0])
    public, kernel = (
        FlatAdam(start.clone(), torch.zeros(3), lr=0.01, betas=(0.8, 0.99), eps=1e-6, use_kernel=use)
        for use in (False, True)
    )
    try:
        for g in gradients:
            for adam in (public, kernel):
                adam.grad.copy_(torch.tensor(g))
                adam.step()
    except (TypeError, RuntimeError, ValueError):  # another signature or a refused argument
        return False
    return torch.allclose(kernel.flat, public.flat, rtol=1e-6, atol=1e-7)


class LinearNetAdam:
    """Trains `model` in place: `step` is loss.backward() plus Adam.step().

    Same update as `torch.optim.Adam(model.parameters(), lr, betas, eps)` on
    the mean cross-entropy of the batch (no weight decay, no amsgrad). Only
    for a model `fast_path_refusal` admits.
    """

    def __init__(
        self,
        model: LinearNet,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        use_kernel: bool | None = None,
    ) -> None:
        first, second = model.layers[0], model.layers[2]
        if not (isinstance(first, nn.Linear) and isinstance(second, nn.Linear)):
            raise TypeError("LinearNetAdam needs LinearNet's Linear-ReLU-Linear layers.")
        parameters = [first.weight, first.bias, second.weight, second.bias]
        flat = torch.cat([p.detach().reshape(-1) for p in parameters])
        grad = torch.zeros_like(flat)
        values = _views(flat, parameters)
        # The model's parameters become views of the flat buffer, so the model
        # always evaluates the values being trained.
        with torch.no_grad():
            for parameter, view in zip(parameters, values, strict=False):
                parameter.data = view
        self.w1, self.b1, self.w2, self.b2 = values
        self.g_w1, self.g_b1, self.g_w2, self.g_b2 = _views(grad, parameters)
        self.adam = FlatAdam(flat, grad, lr, (float(betas[0]), float(betas[1])), eps, use_kernel)
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
        self.adam.step()

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
