"""The general training path, the fast path's guard, configured models and optimizers, and the
held-out validation digits, on real digits (the bundled sample)."""

from __future__ import annotations

import copy
import logging
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from ds.build import OptimizerSpec, build_model, optimizer_factory
from ds.config import register_configs, validate
from ds.data import MNIST_SAMPLE, load_mnist, normalise_images, validation_split
from ds.device import resolve_device
from ds.errors import DeviceError
from ds.model import LinearNet
from ds.step import FlatAdam, fast_path_refusal, fused_adam_kernel_works
from ds.train import train
from tests.cli import CONF

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def sample(sample_dir: Path):
    return load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)


def composed(*overrides: str):
    """The config `python main.py overrides...` would run, composed by Hydra from conf/."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", overrides=["paths.log=/tmp", *overrides])
    validate(cfg)
    return cfg


def train_config(sample, cfg, epochs: int = 2, **kwargs):
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    history = train(
        sample,
        model,
        optimizer_factory(cfg.optimizer, lr=cfg.params.lr),
        batch_size=cfg.params.batch_size,
        epoch_count=epochs,
        seed=cfg.seed,
        **kwargs,
    )
    return model, history


# --- the fast path's Adam: private kernel behind a probe, public fallback ---------------


def test_the_fused_kernel_probe_passes_here_and_both_updates_equal_torch_adam() -> None:
    assert fused_adam_kernel_works()  # torch 2.13 has it; a torch without it gets the public update
    start = torch.randn(50, generator=torch.Generator().manual_seed(3))
    reference = start.clone().requires_grad_()
    adam = torch.optim.Adam([reference], lr=0.02, betas=(0.85, 0.995), eps=1e-7, foreach=False, fused=False)
    kernel = FlatAdam(start.clone(), torch.zeros(50), 0.02, (0.85, 0.995), 1e-7, use_kernel=True)
    public = FlatAdam(start.clone(), torch.zeros(50), 0.02, (0.85, 0.995), 1e-7, use_kernel=False)
    gradients = torch.Generator().manual_seed(4)
    for _ in range(20):
        g = torch.randn(50, generator=gradients)
        reference.grad = g.clone()
        adam.step()
        for ours in (kernel, public):
            ours.grad.copy_(g)
            ours.step()
    torch.testing.assert_close(kernel.flat, reference.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(public.flat, reference.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # trains for seconds
def test_a_torch_without_the_private_kernel_trains_the_same_with_public_operations(
    sample, monkeypatch, caplog
) -> None:
    """The probe's fallback: with torch._fused_adam_ gone, the fast path says so, uses the public
    update, and trains to the same weights as with the kernel."""
    import ds.step

    caplog.set_level(logging.INFO, logger="ds")
    torch.manual_seed(0)
    with_kernel, without = LinearNet(32), LinearNet(32)
    without.load_state_dict(with_kernel.state_dict())
    adam = partial(torch.optim.Adam, lr=2e-3)
    train(sample, with_kernel, adam, batch_size=64, epoch_count=1, seed=5)
    monkeypatch.delattr(torch, "_fused_adam_")
    monkeypatch.setattr(ds.step, "_KERNEL_WORKS", None)  # probed again, as in a new process
    train(sample, without, adam, batch_size=64, epoch_count=1, seed=5)

    paths = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training path:")]
    assert "torch's fused Adam kernel" in paths[0] and "Adam in public tensor operations" in paths[1], paths
    assert any("torch._fused_adam_ is missing" in r.getMessage() for r in caplog.records)
    for ours, theirs in zip(without.state_dict().values(), with_kernel.state_dict().values(), strict=False):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# --- which path trains what --------------------------------------------------------------


def _swapped_activation() -> nn.Module:
    model = LinearNet(32)
    model.layers[1] = nn.Tanh()
    return model


def _extra_layer() -> nn.Module:
    model = LinearNet(32)
    model.layers.append(nn.ReLU())
    model.layers.append(nn.Linear(10, 10))
    return model


def _adam(model: nn.Module, **settings) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-3, **settings)


def test_the_fast_path_takes_exactly_linearnet_with_plain_adam_on_a_cpu() -> None:
    model = LinearNet(32)
    assert fast_path_refusal(model, _adam(model), CPU) is None
    assert fast_path_refusal(model, _adam(model, betas=(0.8, 0.99), eps=1e-6, fused=True), CPU) is None
    refusals = {
        "activation swapped": (_swapped_activation(), _adam, CPU),
        "extra layer": (_extra_layer(), _adam, CPU),
        "MLP": (build_model(composed("model=mlp", "model.hidden=[32]").model), _adam, CPU),
        "weight decay": (model, partial(_adam, weight_decay=1e-4), CPU),
        "amsgrad": (model, partial(_adam, amsgrad=True), CPU),
        "maximize": (model, partial(_adam, maximize=True), CPU),
        "AdamW": (model, lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3), CPU),
        "a GPU": (model, _adam, torch.device("cuda")),
    }
    for case, (m, make, device) in refusals.items():
        assert fast_path_refusal(m, make(m), device) is not None, case
    hooked = LinearNet(32)
    hooked.layers[0].register_forward_hook(lambda *args: None)
    assert "hooks" in fast_path_refusal(hooked, _adam(hooked), CPU)


@pytest.mark.parametrize(
    ("overrides", "fast"),
    [
        ((), True),
        (("optimizer.betas=[0.8,0.99]", "optimizer.eps=1e-6"), True),
        (("optimizer.weight_decay=1e-4",), False),
        (("optimizer.amsgrad=true",), False),
        (("optimizer=adamw",), False),
        (("optimizer=sgd",), False),
    ],
    ids=["adam", "adam-betas-eps", "weight-decay", "amsgrad", "adamw", "sgd"],
)
def test_a_configured_optimizer_is_judged_as_its_built_instance_would_be(overrides, fast) -> None:
    """optimizer_factory's spec: the fast path reads its settings instead of building it."""
    cfg = composed(*overrides)
    spec = optimizer_factory(cfg.optimizer, lr=cfg.params.lr)
    model = LinearNet(32)
    built = spec(model.parameters())
    assert fast_path_refusal(model, spec, CPU) == fast_path_refusal(model, built, CPU)
    assert (fast_path_refusal(model, spec, CPU) is None) == fast
    group, settings = built.param_groups[0], spec.settings
    shared = (set(group) & set(settings)) - {"fused"}  # fused: chosen when built, for the device
    assert shared >= {"lr", "weight_decay"}
    assert {k: settings[k] for k in shared} == {k: group[k] for k in shared}


class CountingSpec(OptimizerSpec):
    """optimizer_factory's spec, counting how often train() builds it."""

    def __call__(self, parameters):
        built.append(self.cls)
        return super().__call__(parameters)


built: list[type] = []


@pytest.mark.parametrize(
    ("overrides", "builds"),
    [((), 0), (("model=mlp", "model.hidden=[32]"), 1), (("optimizer=adamw",), 1)],
    ids=["linearnet-adam", "mlp", "adamw"],
)
def test_train_builds_the_configured_optimizer_only_for_the_general_path(sample, overrides, builds) -> None:
    cfg = composed(*overrides)
    spec = optimizer_factory(cfg.optimizer, lr=cfg.params.lr)
    built.clear()
    counting = CountingSpec(spec.cls, spec.options)
    train(sample, build_model(cfg.model), counting, batch_size=512, epoch_count=1, seed=0)
    assert len(built) == builds


def test_options_an_optimizer_does_not_take_or_out_of_range_are_refused_as_torch_refuses_them(sample) -> None:
    with pytest.raises(TypeError, match="weight_decya"):
        OptimizerSpec(torch.optim.Adam, {"lr": 1e-3, "weight_decya": 0.1})
    model = LinearNet(32)
    for options in ({"lr": -0.1}, {"lr": 1e-3, "betas": (0.9, 1.5)}, {"lr": 1e-3, "eps": -1.0}):
        spec = OptimizerSpec(torch.optim.Adam, options)
        assert "out of range" in fast_path_refusal(model, spec, CPU), options
        with pytest.raises(ValueError):
            train(sample, LinearNet(32), spec, batch_size=512, epoch_count=1, seed=0)


@pytest.mark.slow  # trains on both paths
def test_the_fast_path_trains_a_configured_adam_as_a_built_one(sample, caplog) -> None:
    """The spec, never built, and torch.optim.Adam built from the same settings: the same updates."""
    caplog.set_level(logging.INFO, logger="ds.train")
    cfg = composed("optimizer.betas=[0.8,0.99]", "params.lr=0.002")
    spec = optimizer_factory(cfg.optimizer, lr=cfg.params.lr)
    torch.manual_seed(0)
    from_spec, from_instance = LinearNet(32), LinearNet(32)
    from_instance.load_state_dict(from_spec.state_dict())
    built = partial(torch.optim.Adam, **spec.options)
    first = train(sample, from_spec, spec, batch_size=64, epoch_count=1, seed=5)[0]
    second = train(sample, from_instance, built, batch_size=64, epoch_count=1, seed=5)[0]

    taken = [
        r.getMessage().split(" (")[0] for r in caplog.records if r.getMessage().startswith("training path:")
    ]
    assert taken == ["training path: fast"] * 2
    for ours, theirs in zip(
        from_spec.state_dict().values(), from_instance.state_dict().values(), strict=False
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert first.train_loss == second.train_loss and first.test_accuracy == second.test_accuracy


@pytest.mark.slow  # trains for seconds
@pytest.mark.parametrize("make_model", [_swapped_activation, _extra_layer], ids=["tanh", "extra-layer"])
def test_a_changed_linearnet_trains_through_autograd_and_learns(sample, make_model, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ds.train")
    torch.manual_seed(0)
    history = train(
        sample, make_model(), partial(torch.optim.Adam, lr=3e-3), batch_size=64, epoch_count=2, seed=0
    )

    paths = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training path:")]
    assert len(paths) == 1 and paths[0].startswith("training path: general (autograd"), paths
    assert "fast" not in paths[0].split(";")[0]
    assert history[-1].test_accuracy >= 0.85


@pytest.mark.slow  # trains for seconds
def test_the_fast_path_makes_the_general_path_s_updates_on_real_digits(sample, caplog) -> None:
    """One epoch each from the same weights and batch order: same parameters, loss and accuracies.

    Tolerance: parameters within rtol 1e-4 / atol 1e-5 after 125 Adam steps (float32 sums in
    another order), train loss within 1e-5, accuracies within one digit."""
    caplog.set_level(logging.INFO, logger="ds.train")
    torch.manual_seed(0)
    fast_model = LinearNet(32)
    general_model = copy.deepcopy(fast_model)
    adam = partial(torch.optim.Adam, lr=2e-3)
    fast = train(sample, fast_model, adam, batch_size=64, epoch_count=1, seed=5)[0]
    general = train(sample, general_model, adam, batch_size=64, epoch_count=1, seed=5, allow_fast_path=False)[
        0
    ]

    taken = [
        r.getMessage().split(" (")[0] for r in caplog.records if r.getMessage().startswith("training path:")
    ]
    assert taken == ["training path: fast", "training path: general"]
    for ours, theirs in zip(
        fast_model.state_dict().values(), general_model.state_dict().values(), strict=False
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert fast.train_loss == pytest.approx(general.train_loss, abs=1e-5)
    assert abs(fast.train_accuracy - general.train_accuracy) <= 1 / 8000
    assert abs(fast.test_accuracy - general.test_accuracy) <= 1 / 2000


@pytest.mark.slow  # trains six models for an epoch each
@pytest.mark.parametrize(
    ("overrides", "at_least"),
    [
        (("optimizer=adam", "params.lr=0.003"), 0.90),
        (("optimizer=adamw", "params.lr=0.003"), 0.90),
        (("optimizer=sgd", "params.lr=0.05"), 0.90),
        (("optimizer=sgd", "optimizer.nesterov=true", "params.lr=0.05"), 0.90),
        (
            (
                "model=mlp",
                "model.hidden=[128,64]",
                "model.activation=gelu",
                "model.dropout=0.1",
                "params.lr=0.003",
            ),
            0.90,
        ),
        (("model=mlp", "model.activation=tanh", "optimizer=sgd", "params.lr=0.05"), 0.90),
    ],
)
def test_each_configured_model_and_optimizer_trains_on_the_sample(
    sample, overrides, at_least, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="ds.train")
    cfg = composed(*overrides)
    _, history = train_config(sample, cfg)
    assert history[-1].test_accuracy >= at_least
    path = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training path:"))
    assert path.startswith(
        "training path: fast" if overrides[0] == "optimizer=adam" else "training path: general"
    )


# --- the held-out validation digits ----------------------------------------------------


class Recording(nn.Module):
    """LinearNet that keeps every input it is trained on (a real model, through autograd)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = LinearNet(32)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.net(x)


@pytest.mark.slow  # trains for seconds
def test_held_out_digits_never_reach_a_training_batch(sample) -> None:
    recording = Recording()
    history = train(
        sample,
        recording,
        partial(torch.optim.Adam, lr=3e-3),
        batch_size=100,
        epoch_count=2,
        seed=0,
        objective="val_accuracy",
    )

    kept, held_out = validation_split(len(sample.train_y))
    assert len(held_out) == 800 and held_out[:3].tolist() == [9, 19, 29]
    assert set(kept.tolist()).isdisjoint(held_out.tolist()) and len(kept) + len(held_out) == 8000
    rows = lambda images: {bytes(r.numpy().tobytes()) for r in images}  # noqa: E731
    trained_on = torch.cat(recording.seen)
    assert len(trained_on) == 2 * len(kept)  # two epochs of the kept digits, no more
    held_out_rows = rows(normalise_images(sample.train_images[held_out]))
    kept_rows = rows(normalise_images(sample.train_images[kept]))
    assert held_out_rows - kept_rows == held_out_rows, "a held-out digit has an identical twin in training"
    assert rows(trained_on) == kept_rows  # every kept digit, and nothing held out
    assert all(m.val_accuracy is not None and m.objective == m.val_accuracy for m in history)
    assert "Val Accuracy: " in history[-1].summary() and history[-1].val_accuracy >= 0.85


@pytest.mark.slow  # trains for seconds
def test_the_default_objective_trains_on_every_training_digit(sample) -> None:
    recording = Recording()
    (metrics,) = train(
        sample, recording, partial(torch.optim.Adam, lr=3e-3), batch_size=500, epoch_count=1, seed=0
    )
    assert sum(len(x) for x in recording.seen) == 8000
    assert metrics.val_accuracy is None and metrics.objective == metrics.test_accuracy
    assert "Val Accuracy" not in metrics.summary()


# --- devices ------------------------------------------------------------------------------


def test_auto_is_the_cpu_here_and_a_missing_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == CPU and resolve_device("cpu") == CPU
    for name in ("cuda", "cuda:7"):
        with pytest.raises(DeviceError, match=f"device='{name}': CUDA is not available on this machine"):
            resolve_device(name)
