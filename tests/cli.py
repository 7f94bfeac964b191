"""Running `python main.py ...` for real, in a subprocess, as a user would."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
    args: list[str], workdir: Path, timeout: float = 300, main: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python main.py args` with `workdir` as the launch directory (`main`: another copy's main.py)."""
    return subprocess.run(
        [sys.executable, str(main or MAIN), *args],
        cwd=workdir,
        env=main_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_of_the_project(destination: Path, root: Path = ROOT) -> Path:
    """main.py with its packages, configs and the bundled sample, copied to `destination`, so that a
    test may damage the copy's data/sample/ (ds.datasets.SAMPLE_DIR is beside the code).

    Files a user made in the checkout (what git calls untracked:
    `python -m pruning_optuna_sweeper export` writes conf/params/<name>.yaml) are left out,
    so that no test depends on them."""
    made_by_user = users_files(root)
    left_out = []
    for package in ("ds", "pruning_optuna_sweeper", "hydra_plugins", "conf", "data/sample"):

        def ignore(folder: str, names: list[str]) -> list[str]:
            users = [n for n in names if Path(folder, n).resolve() in made_by_user]
            left_out.extend(Path(folder, n).relative_to(root).as_posix() for n in users)
            return [*users, *(n for n in names if n == "__pycache__")]

        shutil.copytree(root / package, destination / package, ignore=ignore)
    if left_out and root == ROOT:  # a new project file not yet `git add`ed would be missed silently
        warnings.warn(
            f"the tests run without files git does not track: {', '.join(sorted(left_out))}", stacklevel=2
        )
    for module in ("main.py", "sweep_hooks.py"):
        shutil.copy2(root / module, destination / module)
    return destination / "main.py"


def users_files(root: Path) -> set[Path]:
    """The files git does not track and does not ignore in `root`: a user's own, not the project's."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return set()
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        warnings.warn(
            f"git cannot list the untracked files, so none is left out: {listed.stderr.strip()}", stacklevel=2
        )
        return set()
    return {(root / name).resolve() for name in listed.stdout.split("\0") if name}


# Every test runs this copy of the app: the checkout's as the project has it (see copy_of_the_project).
_SNAPSHOT = Path(tempfile.mkdtemp(prefix="app-under-test-"))
atexit.register(shutil.rmtree, _SNAPSHOT, ignore_errors=True)
MAIN = copy_of_the_project(_SNAPSHOT)
CONF = _SNAPSHOT / "conf"


def epoch_lines(output: str) -> list[tuple[int, int, float, float]]:
    return [(int(e), int(n), float(test), float(train)) for e, n, test, train in EPOCH_LINE.findall(output)]


EXAMPLE = ROOT / "examples" / "descent"


def copy_example(parent: Path, name: str = "descent") -> Path:
    """examples/<name> in a folder of its own, where only installed packages are importable."""
    import shutil

    folder = parent / name
    shutil.copytree(
        EXAMPLE.parent / name, folder, ignore=shutil.ignore_patterns("__pycache__", "multirun", "outputs")
    )
    return folder


def run_example(app: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the example app's folder, with neither this repository nor a storage
    in the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SWEEP_STORAGE")}
    return subprocess.run(
        [sys.executable, *args], cwd=app, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m pruning_optuna_sweeper args`: its `main`, called in this process from `cwd` (a
    subprocess costs seconds of imports; `run_cli_process` is one)."""
    from pruning_optuna_sweeper.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(
        ["python", "-m", "pruning_optuna_sweeper", *args], code, out.getvalue(), err.getvalue()
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
