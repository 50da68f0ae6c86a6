"""Nodes of the `report` pipeline: thin wrappers over `clue_pipeline.experiments`."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from clue_pipeline.config import to_dataclass
from clue_pipeline.experiments.plan import Plan, build_plan
from clue_pipeline.experiments.report import ReportSettings, assemble
from clue_pipeline.experiments.representation import RepresentationConfig
from clue_pipeline.experiments.runner import (
    DEFAULT_PATHS,
    RunnerConfig,
    run_missing,
    settings_resolver,
)
from clue_pipeline.experiments.store import CellStore

logger = logging.getLogger(__name__)


def run_cells(report_params: dict, encoder_params: dict) -> dict[str, Any]:
    """Compute the profile's missing cells (at most ``report.max_new_cells``); a log of them."""
    plan = _plan(report_params, encoder_params)
    store = _store(plan)
    runner = RunnerConfig(
        project_dir=Path.cwd(),
        envs=dict(plan.profile["envs"]),
        threads=int(report_params["threads"]),
        timeout_s=report_params.get("cell_timeout_s"),
        paths={**DEFAULT_PATHS, **report_params.get("paths", {})},
        representation=to_dataclass(
            RepresentationConfig, report_params.get("representation"), "report.representation"
        ),
    )
    cells = plan.all_cells()
    only = report_params.get("run_only")
    if only:
        chosen = {c for key in only for c in plan.cells.get(key, [])}
        cells = [c for c in cells if c in chosen]
    missing = store.missing(cells)
    limit = report_params.get("max_new_cells")
    logger.info(
        "report profile %r: %d cells, %d missing, running %s of them",
        report_params["profile"],
        len(cells),
        len(missing),
        "all" if limit is None else min(int(limit), len(missing)),
    )
    started = time.perf_counter()
    log = run_missing(cells, store, runner, None if limit is None else int(limit))
    return {
        "profile": report_params["profile"],
        "store": str(store.root),
        "cells": len(plan.all_cells()),
        "ran": log,
        "sitting_s": time.perf_counter() - started,
    }


def build_report(
    run_log: dict, report_params: dict, encoder_params: dict, evaluate_params: dict
) -> tuple[str, dict]:
    """report.md and its figures from every stored cell of the profile."""
    plan = _plan(report_params, encoder_params)
    store = _store(plan)
    collapse = report_params["collapse"]
    settings = ReportSettings(
        profile=report_params["profile"],
        k=float(report_params["noise_k"]),
        collapse_loss_below=float(collapse["loss_below"]),
        collapse_std_ratio=float(collapse["std_ratio"]),
        untestable=dict(plan.profile.get("untestable") or {}),
    )
    paths = {**DEFAULT_PATHS, **report_params.get("paths", {})}
    facts = {
        "command": shlex.join(["kedro", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "threads": report_params["threads"],
        "sitting": {k: report_params.get(k) for k in ("profile", "max_new_cells", "run_only")},
        "store": report_params["profiles"][report_params["profile"]]["store"],
        "new_cells": sum(1 for entry in run_log["ran"] if "wall_s" in entry),
        "failed_cells": [entry for entry in run_log["ran"] if "failed" in entry],
        "sitting_s": run_log["sitting_s"],
        "exclude_history": bool(evaluate_params.get("exclude_history", False)),
        "datasets": {d: _counts(d, paths) for d in plan.profile["envs"]},
    }
    return assemble(plan, store, settings, facts)


def _plan(report_params: dict, encoder_params: dict) -> Plan:
    name = report_params["profile"]
    profiles = report_params["profiles"]
    if name not in profiles:
        raise ValueError(
            f"report.profile = {name!r}: expected one of {sorted(profiles)} "
            "(conf/base/parameters_report.yml)"
        )
    return build_plan(profiles[name], float(encoder_params["dropout"]))


def _store(plan: Plan) -> CellStore:
    envs = dict(plan.profile["envs"])
    return CellStore(Path.cwd() / plan.profile["store"], settings_resolver(Path.cwd(), envs))


def _counts(dataset: str, paths: dict) -> dict[str, int]:
    """Users, items and interactions after the sequences pipeline's filters, where prepared."""
    path = Path(paths["filtered_interactions"].format(dataset=dataset))
    if not path.exists():
        return {}
    frame = pd.read_parquet(path, columns=["user_id", "item_id"])
    return {
        "users": int(frame["user_id"].nunique()),
        "items": int(frame["item_id"].nunique()),
        "interactions": len(frame),
    }


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
