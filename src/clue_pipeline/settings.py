"""Project settings: hooks and the config loader's patterns."""

import os

from kedro.config import OmegaConfigLoader

from clue_pipeline.hooks import (
    FailedRunTagHook,
    MissingInputsHook,
    MlflowOutputsHook,
    RunLockHook,
    ThreadBudgetHook,
)
from clue_pipeline.run_summary import RunSummaryHook

# MLflow's usage telemetry is switched off by the environment only; the project's own
# `.telemetry` file (consent: false) covers kedro-telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# RunLockHook before MissingInputsHook: both are tryfirst, and pluggy calls the later
# registered first, so a run refused for missing inputs never takes the lock.
HOOKS = (
    RunLockHook(),
    MissingInputsHook(),
    FailedRunTagHook(),
    ThreadBudgetHook(),
    MlflowOutputsHook(),
    RunSummaryHook(),
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # conf/local and conf/<env> files need only name the keys they change.
    "merge_strategy": {"mlflow": "soft", "parameters": "soft"},
}
