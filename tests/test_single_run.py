"""`python main.py` end to end: a real Hydra CLI run in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ds.config import Config, ConfigError, validate
from tests.cli import MAIN, SHARED_MNIST, copy_of_the_project, epoch_lines, main_env, offline_args, run_main
from tests.events import hparams, load_events, session


def torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
def test_two_epochs_on_the_sample_reach_090_and_log_everything(tmp_path: Path) -> None:
    result = run_main(
        [*offline_args(tmp_path), "params.epoch_count=2", "params.lr=0.003", "run_name=first"], tmp_path
    )

    assert result.returncode == 0, result.stderr
    lines = epoch_lines(result.stdout)
    assert [(e, n) for e, n, _, _ in lines] == [(1, 2), (2, 2)]
    assert lines[-1][2] >= 0.90
    assert "mnist-sample(8000/2000" in result.stdout
    assert (result.stdout + result.stderr).count("FALLING BACK to the bundled") == 1  # said once, loudly
    assert "Warning:" not in result.stderr  # no Python warning (a library's deprecation) reaches the user

    saved = list((tmp_path / "outputs").glob("*/*/.hydra/config.yaml"))
    assert len(saved) == 1 and "lr: 0.003" in saved[0].read_text()

    events = load_events(tmp_path / "runs" / "first")
    test_curve = [s.value for s in events.Scalars("accuracy/test")]
    assert len(test_curve) == 2 and test_curve[-1] == pytest.approx(lines[-1][2], abs=1e-4)
    assert not [
        tag for tag in events.Tags()["scalars"] if tag.startswith("hparam/")
    ]  # HParams reads the curves
    assert "confusion/test" in events.Tags()["images"]
    assert hparams(events) == {
        "lr": pytest.approx(0.003),
        "batch_size": 64,
        "epoch_count": 2,
        "model": "LinearNet",
        "hidden": 32,
        "optimizer": "Adam",
        "seed": 0,
        "data": "mnist-sample",
        "device": "cpu",
        "objective": "test_accuracy",
        "epochs_trained": 2,
        "outcome": "complete",
    }
    assert session(events) == ("first", "STATUS_SUCCESS")
    assert "training path: fast (LinearNet + Adam on the CPU" in result.stdout


@pytest.mark.slow
def test_the_same_seed_gives_the_same_accuracy_and_runs_never_share_a_folder(tmp_path: Path) -> None:
    args = [*offline_args(tmp_path), "params.epoch_count=1", "run_name=same", "seed=7"]
    first = run_main(args, tmp_path)
    second = run_main(args, tmp_path)
    other_seed = run_main([*args[:-1], "seed=8"], tmp_path)

    assert first.returncode == second.returncode == other_seed.returncode == 0
    assert epoch_lines(first.stdout) == epoch_lines(second.stdout)
    assert epoch_lines(first.stdout) != epoch_lines(other_seed.stdout)
    # One TensorBoard run each, as a run_name reused (or a start second shared) would mix them.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["same", "same-2", "same-3"]
    for folder, result in (("same", first), ("same-2", second), ("same-3", other_seed)):
        curve = [s.value for s in load_events(tmp_path / "runs" / folder).Scalars("accuracy/test")]
        assert curve == [pytest.approx(epoch_lines(result.stdout)[-1][2], abs=1e-4)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("params.lr=-1", "params.lr=-1.0: expected a finite learning rate > 0"),
        ("params.lr=inf", "params.lr=inf: expected a finite learning rate > 0"),
        ("params.batch_size=0", "params.batch_size=0: expected an integer >= 1"),
        ("params.epoch_count=0", "params.epoch_count=0: expected an integer in 1..1000"),
        ("params.batch_size=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("params.lrr=0.1", "Could not override 'params.lrr'"),
        ("device=tpu", "device='tpu': expected auto, cpu, cuda, cuda:N (N a device number) or mps"),
        ("objective=loss", "objective='loss': expected test_accuracy or val_accuracy"),
        ("model.activation=tanh", "Key 'activation' not in 'LinearNetConfig'"),  # linearnet has no such key
        ("model=mlp model.activation=swish", "model.activation='swish': expected relu or tanh or gelu"),
        ("model=mlp model.hidden=[64,0]", "model.hidden=[64, 0]: expected a non-empty list of integers >= 1"),
        ("model=mlp model.hidden=64", "Invalid value assigned: int is not a ListConfig"),
        (
            "optimizer=sgd optimizer.nesterov=true optimizer.momentum=0",
            "optimizer.nesterov=True: expected false unless",
        ),
        (
            "optimizer=adamw optimizer.betas=[0.9,1.0]",
            "optimizer.betas=[0.9, 1.0]: expected two numbers, each 0 <= beta < 1",
        ),
        ("optimizer.lr=0.1", "Key 'lr' not in 'AdamConfig'"),  # the learning rate is params.lr
        (
            "model._target_=os.system",
            "model._target_='os.system': expected one of ds.model.LinearNet, ds.model.MLP",
        ),
        ("evaluate=/no/such/model.pt", "evaluate='/no/such/model.pt': expected the path of a model.pt file"),
        # Hydra's message above suggests +params.lrr=0.1, which adds a key the run would ignore.
        (
            "+params.lrr=0.1",
            "params.lrr=0.1: not a key of the training config (ds/config.py), which the run would "
            "ignore; expected a key it has (nearest: params.lr)",
        ),
        ("++foo=1", "foo=1: not a key of the training config"),
        # Values the schema takes but torch or the machine cannot: an overflow and a 8.7 TB model.
        (
            "seed=99999999999999999999",
            "seed=99999999999999999999: expected an integer in 0..18446744073709551615",
        ),
        ("model.hidden=100000000", "model.hidden=100000000: expected a width whose training fits in memory"),
    ],
)
def test_bad_values_fail_before_training_with_a_clear_message(
    tmp_path: Path, override: str, message: str
) -> None:
    # Python lists every module it imports on stderr: the error comes before torch.
    result = run_main(
        [*offline_args(tmp_path), *override.split()], tmp_path, timeout=120, PYTHONPROFILEIMPORTTIME="1"
    )

    assert result.returncode != 0
    assert message in result.stderr
    assert "[Epoch:" not in result.stdout
    assert not (tmp_path / "data" / "cache").exists(), "no data may be loaded for a bad config"
    assert re.search(r"\| +ds\.config$", result.stderr, re.M) and not re.search(
        r"\| +torch$", result.stderr, re.M
    )


@pytest.mark.slow
def test_a_sweep_range_beyond_the_epoch_limit_is_refused_before_any_trial(tmp_path: Path) -> None:
    storage = f"storage=sqlite:///{tmp_path / 's.db'}"
    sweep = ["-m", "hydra/sweeper=optuna", "params.epoch_count=int(interval(1, 1000000))", storage]
    result = run_main([*offline_args(tmp_path), *sweep], tmp_path, timeout=120)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "'params.epoch_count' can reach 1000000, which the task's config rejects: invalid config: "
        "params.epoch_count=1000000: expected an integer in 1..1000." in result.stderr
    )
    assert not (tmp_path / "s.db").exists()


@pytest.mark.slow
def test_more_threads_than_cores_and_a_batch_beyond_the_data_are_warned_about(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))  # the run's own, inherited
    args = [*offline_args(tmp_path), f"threads={cores + 1}", "params.batch_size=1000000000"]
    args.append("params.epoch_count=1")
    result = run_main(args, tmp_path)

    assert result.returncode == 0, result.stderr
    too_many = (
        f"threads={cores + 1} is more than the {cores} cores this process may run on (os.sched_getaffinity)"
    )
    slower = f"the threads take turns, which makes every epoch slower; expected threads={cores} or fewer here"
    assert f"{too_many}: {slower}" in result.stdout
    assert (
        "params.batch_size=1000000000 is more than the 8000 training examples of mnist-sample: each epoch is "
        "one batch of the whole training set, one optimizer step an epoch" in result.stdout
    )
    assert [(e, n) for e, n, _, _ in epoch_lines(result.stdout)] == [(1, 1)]


def _ctrl_c_as_from_a_terminal() -> None:
    """Ctrl-C's default action, which a test run started in the background without job control has ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "by"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_an_interrupted_run_ends_with_one_line_naming_what_it_wrote(
    tmp_path: Path, signum: int, by: str
) -> None:
    output = tmp_path / "output.txt"
    args = [*offline_args(tmp_path), "params.epoch_count=1000", "run_name=stopped"]
    with output.open("w") as out:
        run = subprocess.Popen(
            [sys.executable, str(MAIN), *args],
            cwd=tmp_path,
            env=main_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_ctrl_c_as_from_a_terminal,
        )
    try:
        deadline = time.monotonic() + 120
        while not epoch_lines(output.read_text()):  # polled: the first epoch's line, logged and flushed
            assert run.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
        run.send_signal(signum)
        run.wait(timeout=60)
    finally:
        run.kill()
        run.wait(timeout=10)
    text = output.read_text()

    assert run.returncode == 128 + signum, text  # the shell's convention for a process ended by a signal
    assert "Traceback" not in text
    [line] = [line for line in text.splitlines() if "Run interrupted by" in line]
    done = len(epoch_lines(text))
    [hydra_folder] = (tmp_path / "outputs").glob("*/*")
    assert line.endswith(
        f"Run interrupted by {by} after {done} of 1000 epochs; "
        "written: TensorBoard run runs/stopped (those epochs and the hyperparameters), "
        f"Hydra output folder {hydra_folder.relative_to(tmp_path)} (config, log and the checkpoint of its "
        f"last epoch); continue it: python main.py resume={hydra_folder.relative_to(tmp_path)}"
    )
    assert (hydra_folder / "checkpoint.pt").is_file()
    assert len(load_events(tmp_path / "runs" / "stopped").Scalars("accuracy/test")) == done
    assert (hydra_folder / ".hydra" / "config.yaml").is_file() and line in (
        hydra_folder / "main.log"
    ).read_text()


@pytest.mark.slow
@pytest.mark.skipif(torch_has_cuda(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_a_gpu_this_machine_lacks_is_refused_before_data_loads(tmp_path: Path, device: str) -> None:
    result = run_main([*offline_args(tmp_path), f"device={device}"], tmp_path, timeout=120)

    assert result.returncode != 0
    assert f"error: device='{device}': CUDA is not available on this machine" in result.stderr
    assert "Traceback" not in result.stderr and "[Epoch:" not in result.stdout
    assert not (tmp_path / "data" / "cache").exists(), "no data may be loaded for a missing device"


@pytest.mark.slow
def test_a_val_accuracy_run_logs_it_each_epoch_and_returns_it(tmp_path: Path) -> None:
    result = run_main([*offline_args(tmp_path), "params.epoch_count=2", "objective=val_accuracy"], tmp_path)

    assert result.returncode == 0, result.stderr
    val = [
        float(v)
        for v in re.findall(
            r"\[Epoch: \d/2\], Test Accuracy: [0-9.]+, Train Accuracy: [0-9.]+, "
            r"Val Accuracy: ([0-9.]+), Train Loss: [0-9.]+, Time: ",
            result.stdout,
        )
    ]
    assert len(val) == 2 and val[-1] >= 0.85
    assert f"final val accuracy {val[-1]:.4f}" in result.stdout


@pytest.mark.slow
def test_a_diverging_run_ends_with_one_clear_message(tmp_path: Path) -> None:
    result = run_main([*offline_args(tmp_path), "params.lr=1e30", "params.epoch_count=1"], tmp_path)

    assert result.returncode != 0
    assert (
        "error: the training loss became" in result.stderr
        and "the run diverged; try a smaller params.lr" in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_data_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_main([f"paths.data={not_a_dir}", "progress=false"], tmp_path, timeout=120)

    assert result.returncode != 0
    assert f"paths.data='{not_a_dir}': expected a directory" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("data", ["data/sample", "no-mnist-here"])
def test_a_sample_missing_a_file_ends_with_one_error_naming_it(tmp_path: Path, data: str) -> None:
    """The copy's sample lacks a file, chosen (paths.data=data/sample) or fallen back to: no
    FALLING BACK warning, no traceback."""
    main = copy_of_the_project(tmp_path / "project")
    missing = tmp_path / "project" / "data" / "sample" / "t10k-labels-idx1-ubyte.gz"
    missing.unlink()
    missing.symlink_to(tmp_path / "gone.gz")
    args = [f"paths.data={data}", "data.download=false", "progress=false"]
    result = run_main(args, tmp_path / "project", main=main)

    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    named = f"the bundled sample in {missing.parent} is missing t10k-labels-idx1-ubyte.gz (a symlink to"
    assert named in result.stderr
    assert "FALLING BACK" not in result.stdout + result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "paths.log",
            "expected a writable directory, or a path where one can be made "
            "(it or a folder above it is a file)",
        ),
        ("paths.cache", "expected a directory (it or a folder above it is a file)"),
        (
            "hydra.run.dir",
            "expected a writable directory, or a path where one can be made "
            "(it or a folder above it is a file)",
        ),
    ],
)
def test_an_output_path_under_a_file_is_refused_before_training(
    tmp_path: Path, key: str, expected: str
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run_main([*offline_args(tmp_path), f"{key}={a_file / 'sub'}"], tmp_path, timeout=120)

    assert result.returncode != 0
    assert f"{key}='{a_file / 'sub'}': {expected}" in result.stderr
    assert "[Epoch:" not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self").is_dir(),
    reason="needs Linux's /proc, a folder that takes no new entries, even from root",
)
def test_a_log_path_that_cannot_be_made_is_refused_before_training(tmp_path: Path) -> None:
    result = run_main([*offline_args(tmp_path), "paths.log=/proc/no-such-folder"], tmp_path, timeout=120)

    assert result.returncode != 0
    assert (
        "paths.log='/proc/no-such-folder': expected a writable directory, "
        "or a path where one can be made (cannot make it: " in result.stderr
    )
    assert "[Epoch:" not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["hydra.run.dir=FILE/${now:%H-%M-%S}"],
            "hydra.run.dir='FILE/${now:%H-%M-%S}': expected a writable "
            "directory, or a path where one can be made (FILE: it or a folder above it is a file).",
        ),
        (
            ["-m", "hydra/sweeper=optuna", "hydra.sweep.dir=FILE/sweep"],
            "hydra.sweep.dir='FILE/sweep': "
            "expected a writable directory, or a path where one can be made "
            "(it or a folder above it is a file).",
        ),
        (
            ["++hydra.run.dir=/proc/no-such-folder"],
            "hydra.run.dir='/proc/no-such-folder': expected a "
            "writable directory, or a path where one can be made (cannot make it: ",
        ),
    ],
)
def test_an_output_folder_hydra_cannot_make_is_one_error(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """Refused before Hydra starts (Hydra's own mkdir gives a traceback), but only where it would make it."""
    if "/proc/" in args[-1] and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, a folder that takes no new entries, even from root")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    args = [arg.replace("FILE", str(a_file)) for arg in args]
    result = run_main([*offline_args(tmp_path), *args], tmp_path, timeout=120)
    shown = run_main(["--cfg", "job", *(arg for arg in args if arg != "-m")], tmp_path, timeout=120)

    expected = expected.replace("FILE", str(a_file))
    assert result.returncode == 1 and result.stderr.startswith(f"error: {expected}"), result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert shown.returncode == 0, shown.stderr  # --cfg makes no folder: nothing to refuse


@pytest.mark.slow
def test_help_and_cfg_job_work(tmp_path: Path) -> None:
    shown = run_main(["--cfg", "job", "params.lr=0.05"], tmp_path, timeout=120)
    helped = run_main(["--help"], tmp_path, timeout=120)

    assert shown.returncode == 0 and "lr: 0.05" in shown.stdout and "epoch_count: 3" in shown.stdout
    assert helped.returncode == 0 and "params" in helped.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    not SHARED_MNIST.is_dir(),
    reason="the full MNIST set is in ../shared/data/mnist on the team's machines only",
)
def test_one_epoch_on_full_mnist_reaches_093(tmp_path: Path) -> None:
    result = run_main(
        [f"paths.data={SHARED_MNIST}", "params.epoch_count=1", "params.batch_size=128", "progress=false"],
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert "mnist(60000/10000" in result.stdout
    assert epoch_lines(result.stdout)[-1][2] >= 0.93


@pytest.mark.parametrize("run_name", ["", ".", "../../elsewhere", "/tmp/anywhere", "a/../../b"])
def test_a_run_name_outside_paths_log_is_refused(tmp_path: Path, run_name: str) -> None:
    cfg = OmegaConf.structured(Config)
    cfg.paths.log, cfg.run_name = str(tmp_path / "runs"), run_name

    with pytest.raises(
        ConfigError, match=re.escape(f"run_name={run_name!r}: expected a folder name inside paths.log")
    ):
        validate(cfg)
    cfg.run_name = "study/2026-11-29_10-00-00/trial-0001"  # as a sweep names its trials' runs
    validate(cfg)
