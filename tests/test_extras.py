"""The optional parts: a command or hint that needs an extra which is not installed says, in one line,
what to run with this very Python to install it, instead of failing with a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import copy_example, run_example

# Runs a script or module with the named packages made unimportable, as where they are not installed.
WITHOUT = "import runpy, sys; [sys.modules.__setitem__(m, None) for m in {missing!r}]; sys.argv = {argv!r}; "


def without(
    app: Path, missing: list[str], *argv: str, module: bool = False
) -> subprocess.CompletedProcess[str]:
    run = (
        f"runpy.run_module({argv[0]!r}, run_name='__main__')"
        if module
        else (f"runpy.run_path({argv[0]!r}, run_name='__main__')")
    )
    return run_example(app, "-c", WITHOUT.format(missing=missing, argv=list(argv)) + run)


@pytest.mark.compat
def test_without_optuna_dashboard_the_dashboard_command_says_what_to_install(tmp_path: Path) -> None:
    result = without(
        tmp_path,
        ["optuna_dashboard"],
        "pruning_optuna_sweeper.dashboard",
        f"sqlite:///{tmp_path / 'a.db'}",
        module=True,
    )

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr == (
        "error: optuna-dashboard is not installed in this environment; expected it installed: "
        f"{sys.executable} -m pip install 'optuna-dashboard>=0.21'\n"
    )
    assert not (tmp_path / "a.db").exists()  # refused before anything is written


@pytest.mark.compat
def test_a_sweep_s_closing_hints_say_what_to_install_where_an_extra_is_missing(tmp_path: Path) -> None:
    app = copy_example(tmp_path)
    args = ["descent.py", "-m", "hydra/sweeper=pruning_optuna", "hydra.sweeper.n_trials=2", "steps=5"]
    args += [f"hydra.sweeper.storage=sqlite:///{app / 'study.db'}", "lr=interval(1e-5, 1e-3)"]
    bare = without(app, ["optuna_dashboard", "plotly"], *args)

    assert bare.returncode == 0, bare.stderr[-3000:]
    [watch] = re.findall(r"Watch the study: +(.*)", bare.stdout)
    [report] = re.findall(r"Report \(HTML, PNG\): +(.*)", bare.stdout)
    # The same Python installs the extra and runs the command: the one that ran the sweep.
    assert re.fullmatch(
        r"\(needs optuna-dashboard: (\S+) -m pip install 'optuna-dashboard>=0.21'\) \1 -m .*", watch
    ), watch
    # matplotlib too where it is not installed either (the compatibility matrix's venvs).
    assert re.fullmatch(
        r"\(needs plotly(, matplotlib)?: (\S+) -m pip install 'plotly>=5' 'matplotlib>=3.5'\) \2 -m .*",
        report,
    ), report
    assert watch.endswith("-m pruning_optuna_sweeper.dashboard sqlite:///" + str(app / "study.db")), watch
