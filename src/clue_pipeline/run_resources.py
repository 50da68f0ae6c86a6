"""Wall time and peak memory of every node and stage of a `kedro run`.

A large corpus shows which stage grows faster than the data (``benchmarks/scale_chain.py``
reads these records); a small one shows where a run spends its minutes. Each node's peak is
its own: on Linux the process's high-water mark (``VmHWM``) is reset before every node
(``/proc/self/clear_refs``), so a node's figure is not the largest of the nodes before it.
Elsewhere the figure is the process's peak so far (``ru_maxrss``).

At the end of the run the per-stage table goes to the log, to the active MLflow run as
``run_resources.json`` and, where the environment names one, to the file
``CLUE_RESOURCES_FILE`` (written whole, through a temporary file).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from clue_pipeline.pipeline_registry import stage_of
from clue_pipeline.training.checkpoint import write_atomic

logger = logging.getLogger(__name__)

RESOURCES_FILE_ENV = "CLUE_RESOURCES_FILE"
ARTIFACT = "run_resources.json"
GIB = 1024**3


def reset_peak() -> bool:
    """Reset the process's peak resident memory; False where the system cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_gib(resettable: bool) -> float:
    """The peak resident memory since the last reset (or since the start), in GiB."""
    if resettable:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GIB


def stage_table(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage, in first-run order: nodes, wall seconds (summed) and peak GiB (largest)."""
    stages: dict[str, dict[str, Any]] = {}
    for record in nodes:
        row = stages.setdefault(
            record["stage"],
            {"stage": record["stage"], "nodes": 0, "seconds": 0.0, "peak_rss_gib": 0.0},
        )
        row["nodes"] += 1
        row["seconds"] = round(row["seconds"] + record["seconds"], 2)
        row["peak_rss_gib"] = round(max(row["peak_rss_gib"], record["peak_rss_gib"]), 3)
    return list(stages.values())


class RunResourcesHook:
    """Records each node's wall time and peak memory; reports them per stage at the end."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._nodes: list[dict[str, Any]] = []
        self._resettable = False
        self._run_started = 0.0

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        self._nodes, self._started = [], {}
        self._run_started = time.perf_counter()

    @hook_impl
    def before_node_run(self, node, catalog, inputs) -> None:
        self._resettable = reset_peak()
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs) -> None:
        started = self._started.pop(node.name, None)
        if started is None:
            return
        self._nodes.append(
            {
                "node": node.name,
                "stage": stage_of(node),
                "seconds": round(time.perf_counter() - started, 2),
                "peak_rss_gib": round(peak_gib(self._resettable), 3),
            }
        )

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the run
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        if not self._nodes:
            return
        record = {
            "env": run_params.get("env"),
            "pipelines": run_params.get("pipeline_names") or run_params.get("pipeline_name"),
            "wall_seconds": round(time.perf_counter() - self._run_started, 2),
            "peak_rss_gib": max(n["peak_rss_gib"] for n in self._nodes),
            "peak_is_per_node": self._resettable,
            "stages": stage_table(self._nodes),
            "nodes": self._nodes,
        }
        for row in record["stages"]:
            logger.info(
                "stage %-10s %3d nodes %9.1f s  peak %.2f GiB",
                row["stage"],
                row["nodes"],
                row["seconds"],
                row["peak_rss_gib"],
            )
        _log_to_mlflow(record)
        target = os.environ.get(RESOURCES_FILE_ENV)
        if target:
            _write_json(Path(target), record)


def _log_to_mlflow(record: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_dict(record, ARTIFACT)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=2) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))
