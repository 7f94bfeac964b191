# `make sweep` and `make test` work on a fresh machine with Python 3.11:
# they create .venv and install the pinned requirements first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run sweep best test test-fast lint bench dashboard

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml $(wildcard pruning_optuna_sweeper/*.py hydra_plugins/pruning_optuna_sweeper/*.py)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	rm -rf build  # setuptools' build folder: a module renamed since would be installed again
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: install
	$(PY) main.py

sweep: install
	$(PY) main.py -m hydra/sweeper=optuna

# Trains once more with the best parameters of the study a sweep ran last (best_of=latest).
best: install
	$(PY) main.py best_of=latest

test: install
	$(PY) -m pytest

# The inner loop: no subprocess of the app, no server, no browser (markers: pyproject.toml).
test-fast: install
	$(PY) -m pytest -q -m "not slow and not postgres and not slurm and not browser"

# ruff (lint and format) and mypy (strict on the distribution): configured in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/bench.py

# Creates the study tables first (pruning_optuna_sweeper/dashboard.py), so it can start before the first sweep.
# The storage is $SWEEP_STORAGE, else sqlite:///studies/optuna.db: read from the environment, so
# that a password is on no command line.
dashboard: install
	$(PY) -m pruning_optuna_sweeper.dashboard $(DASHBOARD_ARGS)
