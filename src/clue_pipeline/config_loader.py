"""The project's config loader: ``--params dataset_name=<name>`` also names the output folders.

Every catalog path is ``data/<layer>/${globals:dataset}/...`` and Kedro lets runtime parameters
reach ``parameters`` only, never ``globals``. So a run on another input named on the command
line (``--params dataset_name=my-data,ingest.path=...``) would still write into the
run-environment's dataset folders; here ``dataset_name`` sets the globals' ``dataset`` as well.
"""

from __future__ import annotations

from typing import Any

from kedro.config import OmegaConfigLoader

# settings.py's; here, so that reading conf/ (``experiments.settings``, the GPU scripts) does
# not import the hooks and MLflow.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # conf/local and conf/<env> files need only name the keys they change.
    "merge_strategy": {"mlflow": "soft", "parameters": "soft"},
}


class ProjectConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` whose globals take ``dataset`` from a runtime ``dataset_name``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name = (self.runtime_params or {}).get("dataset_name")
        if name is not None:
            self["globals"] = {**(self._globals or {}), "dataset": str(name)}
            self._globals_oc = None  # the resolver's cached copy of the globals
