"""Saved models: model.pt from a real run, evaluated again by `python main.py evaluate=...`."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import torch

from ds.checkpoint import load_checkpoint, save_checkpoint
from ds.data import MNIST, MNIST_SAMPLE, content_hash, load_mnist
from ds.datasets import DatasetIdentity
from ds.errors import CheckpointError
from ds.model import MLP, LinearNet
from ds.train import evaluate, train
from tests.cli import epoch_lines, offline_args, run_main


@pytest.mark.slow  # trains an MLP for an epoch: seconds
def test_a_saved_model_predicts_as_the_trained_one_and_carries_its_record(
    tmp_path: Path, sample_dir: Path
) -> None:
    data = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    torch.manual_seed(0)
    model = MLP([64], activation="gelu", dropout=0.1)
    (last,) = train(data, model, partial(torch.optim.AdamW, lr=3e-3), batch_size=64, epoch_count=1, seed=0)
    config = {
        "model": {"_target_": "ds.model.MLP", "hidden": [64], "activation": "gelu", "dropout": 0.1},
        "storage": "postgresql+psycopg://user:secret@db/studies",
        "sweep": {"study_name": "s", "trial_number": 3},
    }
    path = save_checkpoint(tmp_path / "trial" / "model.pt", model, config, last.as_dict(), data.identity)

    saved = load_checkpoint(path)
    assert saved.data == data.identity and saved.metrics == last.as_dict()
    assert "storage" not in saved.config and "sweep" not in saved.config  # no secret leaves the run
    rebuilt = saved.build_model()
    assert evaluate(rebuilt, data.test_x, data.test_y)[0] == last.test_accuracy
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left


def test_a_file_that_is_not_a_model_pt_is_refused_by_name(tmp_path: Path) -> None:
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("hello")
    other_torch = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, other_torch)
    with pytest.raises(CheckpointError, match=r"evaluate='.*notes\.pt': not a model file torch can read"):
        load_checkpoint(not_torch)
    with pytest.raises(
        CheckpointError, match=r"weights\.pt': a torch file, but not a model.pt of this project"
    ):
        load_checkpoint(other_torch)


@pytest.mark.slow
def test_a_run_keeps_its_model_and_evaluate_prints_its_accuracy_without_training(tmp_path: Path) -> None:
    trained = run_main(
        [*offline_args(tmp_path), "params.epoch_count=1", "model=mlp", "model.hidden=[64]"], tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    (model_pt,) = (tmp_path / "outputs").glob("*/*/model.pt")
    assert f"model saved: {model_pt}" in trained.stdout
    accuracy = epoch_lines(trained.stdout)[-1][2]

    # The command line's model is ignored: the file's own config builds the model.
    evaluated = run_main(
        [*offline_args(tmp_path), f"evaluate={model_pt}", "model.hidden=7"], tmp_path, timeout=120
    )

    assert evaluated.returncode == 0, evaluated.stderr
    assert "[Epoch:" not in evaluated.stdout and "training path" not in evaluated.stdout
    shown = re.search(
        r"\(MLP, 1 epochs, on mnist-sample\(8000/2000, sha256:\w+\)\): Test Accuracy: ([0-9.]+)",
        evaluated.stdout,
    )
    assert shown and float(shown.group(1)) == pytest.approx(accuracy, abs=1e-4)


@pytest.mark.slow
def test_a_model_trained_on_other_data_is_refused(tmp_path: Path, sample_dir: Path) -> None:
    full_mnist = DatasetIdentity("mnist", 60000, 10000, content_hash([r.sha256 for r in MNIST.resources()]))
    torch.manual_seed(0)
    model_pt = save_checkpoint(
        tmp_path / "model.pt",
        LinearNet(32),
        {"model": {"_target_": "ds.model.LinearNet", "hidden": 32}},
        {"epoch": 3},
        full_mnist,
    )
    result = run_main([*offline_args(tmp_path), f"evaluate={model_pt}"], tmp_path, timeout=120)

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        f"error: evaluate='{model_pt}' was trained on mnist(60000/10000, sha256:ac89dbc2), but paths.data="
        in result.stderr
    )
    assert "gives mnist-sample(8000/2000" in result.stderr
