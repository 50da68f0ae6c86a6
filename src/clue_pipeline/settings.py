"""Project settings: hooks and the config loader's patterns."""

from kedro.config import OmegaConfigLoader

from clue_pipeline.hooks import MlflowOutputsHook, ThreadBudgetHook

HOOKS = (ThreadBudgetHook(), MlflowOutputsHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
