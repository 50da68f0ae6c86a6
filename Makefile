# Two commands do everything: `make run` (set-up + the whole chain on the embedded data)
# and `make test` (set-up with the dev extra + the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
KEDRO := $(BIN)/kedro
# torch first, from its exact pin, so that no other package pulls a CUDA build.
TORCH_PIN := torch==2.13.0
ENV ?= base
PIPELINES ?=
PROFILE ?= quick
VERBOSE ?=
LOGGING := $(if $(VERBOSE),KEDRO_LOGGING_CONFIG=conf/logging_verbose.yml,)
RUN_ARGS := $(if $(PIPELINES),--pipelines=$(PIPELINES),) $(if $(filter-out base,$(ENV)),--env=$(ENV),)

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: install install-dev run test lint viz ui report screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(LOGGING) $(KEDRO) run $(RUN_ARGS)

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

viz: install-dev
	$(KEDRO) viz run --host 127.0.0.1 --port 4141 --no-browser

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# PROFILE=quick (the embedded data, minutes) | full (the public datasets; cells cached and
# resumable, see benchmarks/report_full.py) | smoke
report: install
	$(LOGGING) $(KEDRO) run --pipelines=report --params=report.profile=$(PROFILE) $(if $(filter-out base,$(ENV)),--env=$(ENV),)

# The README's pictures (docs/images/): the browser tests take them on a real run.
screenshots: install-dev
	CLUE_SCREENSHOTS=$(CURDIR)/docs/images $(BIN)/python -m pytest \
		tests/browser/test_kedro_viz.py tests/browser/test_mlflow_compare.py

clean:
	rm -rf build .pytest_cache .ruff_cache
