"""Project settings: hooks and the config loader's patterns."""

import os

from kedro.config import OmegaConfigLoader

from clue_pipeline.hooks import MlflowOutputsHook, ThreadBudgetHook

# MLflow's usage telemetry is switched off by the environment only; the project's own
# `.telemetry` file (consent: false) covers kedro-telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

HOOKS = (ThreadBudgetHook(), MlflowOutputsHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # conf/local/mlflow.yml need only name the keys it changes (e.g. the tracking URI).
    "merge_strategy": {"mlflow": "soft"},
}
