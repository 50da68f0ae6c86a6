"""Project settings: hooks and the config loader's patterns."""

import logging
import os

# Python warnings (the libraries' deprecation notices) become log records of `py.warnings`, so
# conf/logging.yml hides them and `VERBOSE=1` (conf/logging_verbose.yml) shows them. Kedro
# imports this module first; the libraries below warn as they are imported.
logging.captureWarnings(True)

from clue_pipeline.config.hooks import StrictParametersHook  # noqa: E402
from clue_pipeline.config_loader import CONFIG_LOADER_ARGS, ProjectConfigLoader  # noqa: E402,F401
from clue_pipeline.hooks import (  # noqa: E402
    FailedRunTagHook,
    LineageHook,
    MissingInputsHook,
    MlflowOutputsHook,
    RunLockHook,
    ThreadBudgetHook,
    TrackingStoreHook,
)
from clue_pipeline.run_resources import RunResourcesHook  # noqa: E402
from clue_pipeline.run_summary import RunSummaryHook  # noqa: E402

# MLflow's usage telemetry is switched off by the environment only; the project's own
# `.telemetry` file (consent: false) covers kedro-telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# RunLockHook, LineageHook, MissingInputsHook: all tryfirst, and pluggy calls the later
# registered first, so missing inputs are named before stale ones, and a refused run never
# takes the lock.
HOOKS = (
    TrackingStoreHook(),  # a new mlflow.db is built by one run at a time
    StrictParametersHook(),  # unknown parameter keys stop the run before anything else
    RunLockHook(),
    LineageHook(),
    MissingInputsHook(),
    FailedRunTagHook(),
    ThreadBudgetHook(),
    MlflowOutputsHook(),
    RunSummaryHook(),
    RunResourcesHook(),
)

CONFIG_LOADER_CLASS = ProjectConfigLoader
