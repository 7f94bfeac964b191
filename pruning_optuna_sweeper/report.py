"""`python -m pruning_optuna_sweeper report <study>`: a study on one self-contained HTML page,
and PNGs of its main plots.

Drawn by Optuna's own visualisation module: its plotly figures for the page (plotly.js
inlined once, so the file opens offline and can be mailed), its matplotlib backend for the
PNGs (no browser or kaleido needed). Both libraries are the distribution's optional extra
`report`; without them the command says what to install. Epochs are a trial's reported
steps (its intermediate values): the report knows nothing of the app that ran the trials.
"""

from __future__ import annotations

import datetime
import html
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pruning_optuna_sweeper.extras import install_command
from pruning_optuna_sweeper.study import TRIAL_COLUMNS, StudyError, describe_states, trial_row
from pruning_optuna_sweeper.trial import beside_study_file, folder_name

# What the report draws with, as the distribution's extra `report` installs them.
REPORT_PACKAGES = ("plotly", "matplotlib")
# Trials named in a plot's legend at most (the intermediate values: one line each); past it, none.
LEGEND_MAX = 12


class ReportError(StudyError):
    """A report that cannot be drawn or written."""


@dataclass
class Report:
    """What `write_report` wrote, and the plots it left out with why."""

    html: Path
    pngs: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plot:
    """One section of the page: Optuna's plotly function, and its matplotlib twin where it is a PNG."""

    key: str
    heading: str
    plotly: Callable[..., Any]
    matplotlib: Callable[..., Any] | None
    # Why the study cannot show it (None: it can).
    missing: Callable[[optuna.Study], str | None]
    # Whether it plots one objective (a `target` for a multi-objective study).
    targeted: bool = True


def default_folder(storage_url: str | None, study_name: str) -> Path:
    """`<study file>-reports/<study>/` beside a SQLite study (as its artifacts are), else `reports/<study>/`,
    the study's name made one folder name."""
    return (beside_study_file(storage_url, "reports") or Path("reports")) / folder_name(study_name)


def check_packages() -> None:
    missing = [name for name in REPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ReportError(
            f"the report draws with {' and '.join(REPORT_PACKAGES)}, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed here; expected them installed: "
            f"{install_command('report')}"
        )


def write_report(study: optuna.Study, folder: Path, where: str) -> Report:
    """Write `folder`/report.html and the PNGs of `study` (stored in `where`, as shown to the user)."""
    check_packages()
    import plotly.io
    import plotly.offline

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(
            f"cannot make the folder {folder} ({e.strerror}); expected a writable --out"
        ) from None
    trials = study.get_trials(deepcopy=False)
    report = Report(folder / "report.html")
    sections = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Said whenever a target is given; _target gives one whose low values are the good ones.
        warnings.filterwarnings("ignore", message=".* computes the importances of params to achieve low")
        for plot in _plots(study):
            why = plot.missing(study)
            if why is not None:
                report.skipped[plot.heading] = why
                sections.append(f"<h2>{plot.heading}</h2>\n<p class=note>Not drawn: {html.escape(why)}.</p>")
                continue
            figure = plot.plotly(study, **_target(study, plot))
            div = plotly.io.to_html(
                figure, full_html=False, include_plotlyjs=False, div_id=f"plot-{plot.key}"
            )
            sections.append(f"<h2>{plot.heading}</h2>\n{div}")
            if plot.matplotlib is not None:
                report.pngs.append(_png(plot, study, folder / f"{plot.key}.png"))
    page = _PAGE.format(
        title=html.escape(f"Study {study.study_name}"),
        plotly_js=plotly.offline.get_plotlyjs(),
        summary=_summary(study, trials, where),
        sections="\n".join(sections),
        table=_table(trials),
    )
    try:
        report.html.write_text(page, encoding="utf-8")
    except OSError as e:
        raise ReportError(f"cannot write {report.html} ({e.strerror}); expected a writable --out") from None
    return report


def _plots(study: optuna.Study) -> list[Plot]:
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as mpl

    plots = [
        Plot(
            "history",
            "Optimisation history",
            vis.plot_optimization_history,
            mpl.plot_optimization_history,
            _needs_complete(1, params=False),
        ),
        Plot(
            "intermediate",
            "Intermediate values",
            vis.plot_intermediate_values,
            mpl.plot_intermediate_values,
            _needs_intermediate,
            targeted=False,
        ),
        Plot(
            "importances",
            "Parameter importances",
            vis.plot_param_importances,
            mpl.plot_param_importances,
            _needs_complete(2),
        ),
        Plot("parallel", "Parallel coordinates", vis.plot_parallel_coordinate, None, _needs_complete(1)),
        Plot("slices", "Slices", vis.plot_slice, None, _needs_complete(1)),
    ]
    if len(study.directions) in (2, 3):
        plots.insert(
            0,
            Plot(
                "pareto",
                "Pareto front",
                vis.plot_pareto_front,
                mpl.plot_pareto_front,
                _needs_complete(1),
                targeted=False,
            ),
        )
    return plots


def _target(study: optuna.Study, plot: Plot) -> dict[str, Any]:
    """The keywords that name the objective: the first one of a multi-objective study."""
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    if plot.key == "pareto":
        return {"target_names": names}
    if not plot.targeted:
        return {}
    if len(study.directions) == 1:
        return {"target_name": names[0]} if study.metric_names else {}
    name = f"{names[0]} (first of {len(names)} objectives)"
    if plot.key == "importances" and study.directions[0] == optuna.study.StudyDirection.MAXIMIZE:
        return {"target": lambda t: -t.values[0], "target_name": name}  # its evaluator ranks low values best
    return {"target": lambda t: t.values[0], "target_name": name}


def _needs_complete(n: int, params: bool = True) -> Callable[[optuna.Study], str | None]:
    def missing(study: optuna.Study) -> str | None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < n:
            needed = "a completed trial" if n == 1 else f"{n} completed trials"
            return f"needs {needed}; the study has {len(complete)}"
        if params and not any(t.params for t in complete):
            return "its completed trials have no searched parameters"
        return None

    return missing


def _needs_intermediate(study: optuna.Study) -> str | None:
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        return None
    return "no trial reported an intermediate value"


def _png(plot: Plot, study: optuna.Study, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if plot.matplotlib is None:
        raise ValueError(f"plot {plot.key} has no matplotlib twin, so no PNG")
    axes = plot.matplotlib(study, **_target(study, plot))
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(9, 5.5)
    legend = axes.get_legend() if hasattr(axes, "get_legend") else None
    if legend is not None and len(legend.get_texts()) > LEGEND_MAX:
        legend.remove()  # a line per trial: past a few, a legend taller than the plot says nothing
    # savefig's tight bounding box takes in a legend beside the axes; the figure's own tight layout
    # cannot fit one there and only warns ("Tight layout not applied").
    figure.set_layout_engine("none")
    try:
        figure.savefig(path, dpi=100, bbox_inches="tight")
    except OSError as e:
        raise ReportError(f"cannot write {path} ({e.strerror}); expected a writable --out") from None
    finally:
        plt.close(figure)
    return path


def _summary(study: optuna.Study, trials: list[FrozenTrial], where: str) -> str:
    directions = ", ".join(d.name.lower() for d in study.directions)
    names = ", ".join(study.metric_names) if study.metric_names else "not named"
    lines = [
        f"storage {where}",
        f"objective: {names} ({directions})",
        f"trials: {describe_states(study)}",
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete and len(study.directions) == 1:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, value {best.value:.4f}")
    elif complete:
        lines.append(f"Pareto front: trials {', '.join(str(t.number) for t in study.best_trials)}")
    lines.append(f"written {datetime.datetime.now().isoformat(timespec='seconds')}")
    return "\n".join(f"<li>{html.escape(line)}</li>" for line in lines)


def _table(trials: list[FrozenTrial]) -> str:
    """Every trial: the columns of `python -m pruning_optuna_sweeper trials`, one column per parameter."""
    if not trials:
        return "<p class=note>No trials.</p>"
    rows = [trial_row(t) for t in trials]
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    head = [*TRIAL_COLUMNS[:-1], *keys, "reason"]
    body = []
    for r in rows:
        cells = [*r.cells()[:-1], *(r.params.get(k, "") for k in keys), r.reason]
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        body.append(f"<tr class={r.state.lower()}>{tds}</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 90%; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }}
tr.pruned {{ color: #8a6d00; }} tr.fail {{ color: #b00020; }}
.note {{ color: #666; }}
</style>
<script>{plotly_js}</script>
</head>
<body>
<h1>{title}</h1>
<ul>
{summary}
</ul>
{sections}
<h2>Trials</h2>
{table}
</body>
</html>
"""
