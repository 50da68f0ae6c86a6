"""Project settings: hooks and the config loader's patterns."""

import os

from kedro.config import OmegaConfigLoader

from clue_pipeline.hooks import MissingInputsHook, MlflowOutputsHook, ThreadBudgetHook

# MLflow's usage telemetry is switched off by the environment only; the project's own
# `.telemetry` file (consent: false) covers kedro-telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

HOOKS = (MissingInputsHook(), ThreadBudgetHook(), MlflowOutputsHook())

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
