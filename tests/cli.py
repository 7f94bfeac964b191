"""Running `python main.py ...` for real, in a subprocess, as a user would."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
# The full MNIST set, beside the repository on the team's machines and in CI.
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
EPOCH_LINE = re.compile(r"\[Epoch: (\d+)/(\d+)\], Test Accuracy: ([0-9.]+), Train Accuracy: ([0-9.]+)")


def offline_args(workdir: Path) -> list[str]:
    """Overrides that keep a run on the bundled sample and inside `workdir`."""
    return [
        f"paths.data={workdir / 'no-mnist-here'}",
        "data.download=false",
        "progress=false",
    ]


def main_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DS_DATA_DIR", "SWEEP_STORAGE")}
    env.update(extra)
    return env


def run_main(
    args: list[str], workdir: Path, timeout: float = 300, main: Path = MAIN, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python main.py args` with `workdir` as the launch directory (`main`: a copy's main.py)."""
    return subprocess.run(
        [sys.executable, str(main), *args],
        cwd=workdir,
        env=main_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_of_the_project(destination: Path) -> Path:
    """main.py with its packages, configs and the bundled sample, copied to `destination`, so that a
    test may damage the copy's data/sample/ (ds.datasets.SAMPLE_DIR is beside the code)."""
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("ds", "sweeps", "hydra_plugins", "conf", "data/sample"):
        shutil.copytree(ROOT / package, destination / package, ignore=ignore)
    for module in ("main.py", "sweep_hooks.py"):
        shutil.copy2(ROOT / module, destination / module)
    return destination / "main.py"


def epoch_lines(output: str) -> list[tuple[int, int, float, float]]:
    return [(int(e), int(n), float(test), float(train)) for e, n, test, train in EPOCH_LINE.findall(output)]


EXAMPLE = ROOT / "examples" / "descent"


def copy_example(parent: Path) -> Path:
    """examples/descent in a folder of its own, where only installed packages are importable."""
    import shutil

    folder = parent / "descent"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "multirun", "outputs"))
    return folder


def run_example(app: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the example app's folder, with neither this repository nor a storage in the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SWEEP_STORAGE")}
    return subprocess.run([sys.executable, *args], cwd=app, env=env, capture_output=True, text=True, timeout=timeout)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m sweeps args`: its `main`, called in this process from `cwd` (a
    subprocess costs seconds of imports; `run_cli_process` is one)."""
    from sweeps.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["python", "-m", "sweeps", *args], code, out.getvalue(), err.getvalue())
