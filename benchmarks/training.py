"""The training parts: epoch speed against a tutorial-style loop, the previous code's epoch,
data load, and torch threads. Each returns a results Part."""

from __future__ import annotations

import functools
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.results import ROOT, Part, Results
from ds.data import MNIST_MEAN, MNIST_STD, clear_memory_cache, load_mnist
from ds.device import resolve_device
from ds.model import MLP, LinearNet
from ds.train import train

# README's target for the default epoch against the tutorial loop.
EPOCH_TARGET = 8.0
CACHED_LOAD_TARGET_S = 0.2


class TutorialMNIST(Dataset):
    """The usual tutorial dataset: one sample at a time, normalised on access."""

    def __init__(self, images, labels) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = torch.tensor(self.images[i], dtype=torch.float32) / 255.0
        return (x - MNIST_MEAN) / MNIST_STD, int(self.labels[i])


def reference_epoch(
    loader: DataLoader, make_model: Callable[[], nn.Module] = LinearNet, seed: int = 0
) -> float:
    torch.manual_seed(seed)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    correct = 0
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == y).sum().item()
    return time.perf_counter() - started


def our_epoch(data, make_model: Callable[[], nn.Module] = LinearNet, device: str = "cpu", **adam) -> float:
    """One epoch of ds.train.train; with `adam` settings (fused=..., foreach=...) the general path."""
    torch.manual_seed(0)
    optimizer = functools.partial(torch.optim.Adam, lr=1e-3, **adam)
    history = train(
        data,
        make_model(),
        optimizer,
        batch_size=128,
        epoch_count=1,
        seed=0,
        device=device,
        allow_fast_path=not adam,
    )
    return history[0].seconds


def bench_epoch(results: Results, data_dir: Path, cache: Path, device: str, repeats: int) -> Part:
    torch.set_num_threads(1)
    logging.getLogger("ds.train").setLevel(logging.WARNING)  # the path line, once per epoch run
    data = load_mnist(data_dir, cache)
    arrays = data.arrays
    loader = DataLoader(TutorialMNIST(arrays.train_x, arrays.train_y), batch_size=128, shuffle=True)
    mlp = functools.partial(MLP, [256, 128])
    on = str(resolve_device(device))
    runs: dict[str, Callable[[], float]] = {
        "default (LinearNet + Adam)": lambda: our_epoch(data, device=on),
        "general, LinearNet, fused Adam": lambda: our_epoch(data, device=on, fused=True),
        "general, LinearNet, foreach Adam": lambda: our_epoch(data, device=on, foreach=True),
        "tutorial, LinearNet": lambda: reference_epoch(loader),
        "general, mlp [256, 128], fused Adam": lambda: our_epoch(
            data, mlp, device=on, fused=on in ("cpu", "cuda")
        ),
        "tutorial, mlp [256, 128]": lambda: reference_epoch(loader, mlp),
    }
    for run in runs.values():  # warm-up: first-call imports and allocations
        run()
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):  # interleaved, so every row sees the same machine
        for label, run in runs.items():
            seconds[label].append(run())
    # Noise on a shared machine only ever adds time: the fastest of several
    # runs is the steadiest figure; the median shows what a busy machine gives.
    part = results.part(
        "epoch",
        f"batch 128, 1 thread, device {on} (the tutorial rows: cpu), {repeats} runs each, interleaved; "
        f"{data.identity}",
    )
    for label, values in seconds.items():
        part.row(label, f"fastest {min(values):.3f} s, median {statistics.median(values):.3f} s")
    ratios = (
        ("default vs tutorial, LinearNet", "default (LinearNet + Adam)", "tutorial, LinearNet"),
        ("general (fused) vs tutorial, LinearNet", "general, LinearNet, fused Adam", "tutorial, LinearNet"),
        (
            "general (foreach) vs tutorial, LinearNet",
            "general, LinearNet, foreach Adam",
            "tutorial, LinearNet",
        ),
        (
            "default vs general (fused), LinearNet",
            "default (LinearNet + Adam)",
            "general, LinearNet, fused Adam",
        ),
        (
            "general vs tutorial, mlp [256, 128]",
            "general, mlp [256, 128], fused Adam",
            "tutorial, mlp [256, 128]",
        ),
    )
    for label, ours, theirs in ratios:
        fastest = min(seconds[theirs]) / min(seconds[ours])
        median = statistics.median(seconds[theirs]) / statistics.median(seconds[ours])
        figure = f"{fastest:.1f}x faster (fastest), {median:.1f}x (median)"
        if ours == "default (LinearNet + Adam)" and theirs == "tutorial, LinearNet":
            part.check(label, figure, f">= {EPOCH_TARGET:g}x (fastest)", fastest >= EPOCH_TARGET)
        else:
            part.row(label, figure)
    return part


# The default epoch in a tree of either API (train(data, lr=..., hidden=...) before model groups).
_TREE_EPOCH = """
import inspect, sys, time
from functools import partial
import torch
torch.set_num_threads(1)
from ds.data import load_mnist
from ds.model import LinearNet
from ds.train import train
data = load_mnist(sys.argv[1], sys.argv[2])
def epoch():
    torch.manual_seed(0)
    if "hidden" in inspect.signature(train).parameters:
        return train(data, lr=1e-3, batch_size=128, epoch_count=1, hidden=32, seed=0)[0].seconds
    return train(
        data, LinearNet(32), partial(torch.optim.Adam, lr=1e-3), batch_size=128, epoch_count=1, seed=0
    )[0].seconds
epoch()
print(min(epoch() for _ in range(3)))
"""


def bench_previous(
    results: Results, data_dir: Path, workdir: Path, revision: str | None, rounds: int
) -> Part:
    """This tree's default epoch vs another revision's, each process the fastest of 3 epochs."""
    if revision is None:
        revision = subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    previous = workdir / "previous"
    previous.mkdir()
    # Each tree loads its own bundled sample (ds.data knows it by its folder) when that is the data.
    sample = data_dir.resolve() == (ROOT / "data" / "sample").resolve()
    archive = subprocess.run(
        ["git", "archive", revision, "ds", *(["data/sample"] if sample else [])],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(previous)], input=archive, check=True)
    label_before = f"previous ({revision[:10]})"
    trees = {"this tree": ROOT, label_before: previous}
    seconds: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(rounds):
        for label, tree in trees.items():
            data = tree / "data" / "sample" if sample else data_dir
            result = subprocess.run(
                [sys.executable, "-c", _TREE_EPOCH, str(data), str(workdir / f"cache-{tree.name}")],
                cwd=tree,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(tree)},
            )
            if result.returncode != 0:
                raise RuntimeError(f"the epoch of {label} failed:\n{result.stderr[-3000:]}")
            seconds[label].append(float(result.stdout.strip().splitlines()[-1]))
    part = results.part("previous", f"default epoch, cpu, 1 thread, {rounds} processes each, alternating")
    for label, values in seconds.items():
        part.row(label, f"fastest {min(values):.3f} s, median {statistics.median(values):.3f} s")
    this, before = seconds["this tree"], seconds[label_before]
    part.row(
        "this tree's time / the previous",
        f"{min(this) / min(before):.2f}x (fastest), "
        f"{statistics.median(this) / statistics.median(before):.2f}x (median)",
    )
    return part


def bench_load(results: Results, data_dir: Path) -> Part:
    with tempfile.TemporaryDirectory() as cache:
        clear_memory_cache()
        started = time.perf_counter()
        data = load_mnist(data_dir, cache)
        cold = time.perf_counter() - started
        cached = []
        for _ in range(3):
            clear_memory_cache()
            started = time.perf_counter()
            load_mnist(data_dir, cache)
            cached.append(time.perf_counter() - started)
        started = time.perf_counter()
        load_mnist(data_dir, cache)
        in_memory = time.perf_counter() - started
    part = results.part("load", f"{data.identity}, to normalised tensors")
    part.row("cold (gunzip, parse, verify, write the disk cache)", f"{cold:.3f} s")
    part.check(
        "disk-cached (fastest of 3)",
        f"{min(cached):.3f} s",
        f"< {CACHED_LOAD_TARGET_S} s",
        min(cached) < CACHED_LOAD_TARGET_S,
    )
    part.row("again in the same process", f"{in_memory * 1000:.2f} ms")
    return part


def bench_threads(results: Results, data_dir: Path, cache: Path, repeats: int) -> Part:
    data = load_mnist(data_dir, cache)
    figures = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        our_epoch(data)
        figures[threads] = statistics.median(our_epoch(data) for _ in range(repeats))
    torch.set_num_threads(1)
    part = results.part("threads", f"our default epoch, batch 128, median of {repeats}")
    for threads, s in figures.items():
        part.row(f"{threads} torch thread{'s' if threads > 1 else ''}", f"{s:.3f} s")
    return part
