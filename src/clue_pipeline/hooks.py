"""Kedro hooks of the project."""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
import torch
from kedro.framework.hooks import hook_impl

from clue_pipeline.tracking import log_metric_history

logger = logging.getLogger(__name__)


class ThreadBudgetHook:
    """Sizes torch's intra-op thread pool to the cores this process may use.

    ``CLUE_NUM_THREADS`` overrides; otherwise the CPU affinity mask decides, so a shared
    machine is not oversubscribed by torch's default of one thread per visible core.
    """

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        threads = int(os.environ.get("CLUE_NUM_THREADS", "0")) or len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, threads))
        logger.info("torch uses %d threads", torch.get_num_threads())


class MlflowOutputsHook:
    """Logs what nodes produce into kedro-mlflow's run of this `kedro run`.

    Training histories (outputs named ``*history``) become per-epoch metric histories
    (step = epoch); test metrics (``*_metrics``) become final metrics named
    ``<task>.<method>/<metric>`` and the JSON record an artifact. Naming the datasets by
    convention keeps nodes free of tracking code; kedro-mlflow owns the run itself.
    """

    @hook_impl
    def after_node_run(self, node, outputs: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        for name, value in outputs.items():
            if name.endswith("history"):
                self._log_history(name, value)
            elif name.endswith("_metrics") and isinstance(value, dict):
                self._log_metrics(name, value)

    @staticmethod
    def _log_history(name: str, value: Any) -> None:
        if isinstance(value, list):
            log_metric_history(value, prefix=name)
        elif isinstance(value, dict):  # one history per profile attribute
            for key, history in value.items():
                if isinstance(history, list):
                    log_metric_history(history, prefix=f"{name}.{key}")

    @staticmethod
    def _log_metrics(name: str, record: dict) -> None:
        prefix = name.removesuffix("_metrics")
        numbers = {
            f"{prefix}/{key}".replace("@", "_at_"): float(value)
            for key, value in _flatten(record.get("metrics", {})).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        if numbers:
            mlflow.log_metrics(numbers)
        mlflow.log_dict(record, f"metrics/{prefix}.json")


def _flatten(values: dict, parent: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{parent}.{key}" if parent else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat
