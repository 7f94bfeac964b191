"""The distribution's optional parts (its extras) and the one line that says how to install one.

The dashboard and the report need packages the sweep itself does not; a hint or command that
needs one says, where it is missing, what to run with this very Python to install it. The command
names the packages themselves (with the extra's version bounds), not the distribution with the
extra, which may have been installed from a checkout rather than a package index.
"""

import importlib.metadata
import importlib.util
import shlex
import sys

DISTRIBUTION = "pruning-optuna-sweeper"
# extra -> {module: the package that provides it} (pyproject.toml: [project.optional-dependencies]).
EXTRAS = {
    "dashboard": {"optuna_dashboard": "optuna-dashboard"},
    "report": {"plotly": "plotly", "matplotlib": "matplotlib"},
}


def missing(extra: str) -> list[str]:
    """The packages of `extra` whose module this Python cannot import."""
    return [package for module, package in EXTRAS[extra].items() if importlib.util.find_spec(module) is None]


def install_command(extra: str, python: str | None = None) -> str:
    """The command that installs `extra`'s packages into this Python's environment."""
    python = python or shlex.quote(sys.executable)
    packages = [shlex.quote(_requirement(extra, package)) for package in EXTRAS[extra].values()]
    return f"{python} -m pip install {' '.join(packages)}"


def needs(extra: str, python: str | None = None) -> str:
    """'' where `extra` is installed, else "(needs optuna-dashboard: <install command>) "."""
    absent = missing(extra)
    if not absent:
        return ""
    return f"(needs {', '.join(absent)}: {install_command(extra, python)}) "


def _requirement(extra: str, package: str) -> str:
    """`package` with the version bounds the distribution's extra declares, else its bare name."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return package
    for text in declared:
        requirement, _, marker = text.partition(";")
        if f'extra == "{extra}"' in marker and requirement.strip().lower().startswith(package):
            return requirement.strip()
    return package
