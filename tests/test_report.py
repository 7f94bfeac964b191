"""`python -m pruning_optuna_sweeper report` and `trials` on a real sweep's study, and on studies
a sweep rarely leaves."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.cli import ROOT, main_env, run_cli
from tests.sweep_helpers import load, sqlite_url

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

STUDY = "linearnet-mnist-sample"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def written(stdout: str) -> list[Path]:
    return [Path(p) for p in re.findall(r"^wrote (\S+) \(", stdout, re.M)]


@pytest.fixture(scope="module")
def report(swept_study: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The report of the shared sweep's study, written to its default folder."""
    result = run_cli("--storage", sqlite_url(swept_study), "report", STUDY, cwd=swept_study)
    assert result.returncode == 0, result.stderr
    return result, swept_study


def test_the_report_is_one_offline_page_with_the_plots_and_every_trial(report) -> None:
    result, workdir = report
    folder = workdir / "study-reports" / STUDY  # beside the SQLite study, as its artifacts are
    page, *pngs = written(result.stdout)
    assert page == folder / "report.html"
    html = page.read_text()
    # plotly.js inlined once, then one script per figure.
    assert html.count("<script>") == 1 + html.count("Plotly.newPlot")
    assert "<script src=" not in html and "<link" not in html  # nothing fetched: it opens offline
    for title in (
        "Optimization History Plot",
        "Intermediate Values Plot",
        "Hyperparameter Importances",
        "Parallel Coordinate Plot",
        "Slice Plot",
    ):
        assert title in html
    assert "test_accuracy (maximize)" in html  # the objective's name, as the sweep recorded it
    study = load(workdir)
    rows = re.findall(r"<tr class=(\w+)><td>(\d+)</td><td>(\w+)</td><td>([^<]*)</td><td>(\d+)</td>", html)
    assert [(int(n), state, int(epochs)) for _, n, state, _, epochs in rows] == [
        (t.number, t.state.name, len(t.intermediate_values)) for t in study.get_trials()
    ]
    pruned = study.trials[2]
    assert rows[2][3] == f"{pruned.intermediate_values[2]:.4f} at step 2"
    assert "NonFiniteLossError" in html  # the failed trial's reason
    assert "<th>params.lr</th>" in html
    assert (f"{page} (" in result.stdout) and " MB" in result.stdout
    # The main plots as PNGs, drawn by matplotlib: real images of a readable size.
    assert [p.name for p in pngs] == ["history.png", "intermediate.png", "importances.png"]
    for png in pngs:
        width, height = png_size(png)
        assert width >= 600 and height >= 400 and png.stat().st_size > 10_000


def test_trials_prints_the_report_s_table_in_the_terminal(report) -> None:
    _, workdir = report
    result = run_cli("--storage", sqlite_url(workdir), "trials", STUDY, cwd=workdir)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["trial", "state", "value", "epochs", "duration", "params"]
    study = load(workdir)
    rows = [line.split() for line in lines if not line.lstrip().startswith("reason:")]
    assert [(int(r[0]), r[1]) for r in rows] == [(t.number, t.state.name) for t in study.get_trials()]
    assert rows[2][2:5] == [f"{study.trials[2].intermediate_values[2]:.4f}", "at", "step"]
    assert any(line.lstrip().startswith("reason: NonFiniteLossError") for line in lines)


def made_study(tmp_path: Path, *states: TrialState, directions: tuple[str, ...] = ("maximize",)) -> str:
    """A study of `states` made by Optuna itself (a sweep does not leave these easily), in tmp_path."""
    study = optuna.create_study(study_name="made", storage=sqlite_url(tmp_path), directions=list(directions))
    for number, state in enumerate(states):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        if len(directions) == 1:  # Optuna takes reports from single-objective trials only
            trial.report(0.1 * number, 1)
        values = [trial.params["x"] * (i + 1) for i in range(len(directions))]
        study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
    return sqlite_url(tmp_path)


@pytest.mark.parametrize(
    ("states", "directions", "drawn", "not_drawn"),
    [
        (
            (TrialState.PRUNED, TrialState.FAIL),
            ("maximize",),
            ["intermediate.png"],
            [
                "optimisation history: needs a completed trial; the study has 0",
                "parameter importances: needs 2 completed trials; the study has 0",
                "parallel coordinates: needs a completed trial; the study has 0",
                "slices: needs a completed trial; the study has 0",
            ],
        ),
        (
            (TrialState.COMPLETE,),
            ("maximize",),
            ["history.png", "intermediate.png"],
            ["parameter importances: needs 2 completed trials; the study has 1"],
        ),
        (
            (TrialState.COMPLETE,) * 3,
            ("maximize", "minimize"),
            ["pareto.png", "history.png", "importances.png"],
            ["intermediate values: no trial reported an intermediate value"],
        ),
    ],
    ids=["only-pruned-and-failed", "one-trial", "two-objectives"],
)
def test_a_report_draws_what_the_study_can_show_and_says_what_not(
    tmp_path: Path, states, directions, drawn, not_drawn
) -> None:
    url = made_study(tmp_path, *states, directions=directions)
    result = run_cli("--storage", url, "report", "made", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page, *pngs = written(result.stdout)
    assert page == tmp_path / "out" / "report.html"
    assert [p.name for p in pngs] == drawn
    assert re.findall(r"^not drawn: (.*)", result.stdout, re.M) == not_drawn
    html = page.read_text()
    assert html.count("<tr class=") == len(states)
    if len(directions) == 2:
        assert "Pareto-front Plot" in html and "objective 0 (first of 2 objectives)" in html


def test_an_unknown_study_is_named_with_the_studies_present(report) -> None:
    _, workdir = report
    result = run_cli("--storage", sqlite_url(workdir), "report", "nope", cwd=workdir)
    assert result.returncode == 1
    assert result.stderr == f"error: no study 'nope' in {sqlite_url(workdir)}; studies present: {STUDY}\n"


def test_without_plotly_the_report_says_what_to_install(tmp_path: Path) -> None:
    url = made_study(tmp_path, TrialState.COMPLETE)
    # plotly made unimportable in a fresh interpreter, as where it is not installed.
    code = (
        "import sys; sys.modules['plotly'] = None; "
        "from pruning_optuna_sweeper.cli import main; exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--storage", url, "report", "made"],
        cwd=tmp_path,
        env=main_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "plotly is not installed here" in result.stderr
    # This Python's own pip, with the bounds of the distribution's extra `report`.
    assert f"{sys.executable} -m pip install 'plotly>=5' 'matplotlib>=3.5'" in result.stderr
    assert not (tmp_path / "study-reports").exists()


def test_fifty_trials_draw_no_legend_taller_than_the_plot_and_no_layout_warning(tmp_path: Path) -> None:
    url = made_study(tmp_path, *[TrialState.COMPLETE] * 50)
    result = run_cli("--storage", url, "report", "made", "--out", str(tmp_path / "out"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Tight layout not applied" not in result.stderr and "Warning" not in result.stderr
    width, height = png_size(tmp_path / "out" / "intermediate.png")
    assert width <= 900 and height <= 550, (width, height)  # 9 x 5.5 inches at 100 dpi: no legend beside
