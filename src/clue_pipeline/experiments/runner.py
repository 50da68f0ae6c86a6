"""Run a cell as the project runs: `kedro run --env <env> --nodes ... --config <params>` in its
own process (one MLflow run each, no thread setting shared), then read what it wrote.

Only this module starts Kedro, and only as a command. Parameters travel in a `--config` file
because `--params` cannot carry lists (view strategies).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from clue_pipeline.experiments.cells import (
    PRETRAIN_TASK,
    VIEW_POLICY_NODE,
    Cell,
    kedro_nodes,
    kedro_params,
    reshapes_sequences,
    uses_views,
)
from clue_pipeline.experiments.prepared import PREPARED_PATHS
from clue_pipeline.experiments.representation import RepresentationConfig, summarise_encoder
from clue_pipeline.experiments.settings import cell_settings
from clue_pipeline.experiments.store import CellStore

logger = logging.getLogger(__name__)

PREPARE_PIPELINES = "ingest,sequences,augment"
# Where the project's catalog writes what a cell reads back (conf/base/catalog_*.yml), with
# {dataset} = the run-environment's `globals.dataset`.
DEFAULT_PATHS = {
    "metrics": "data/08_reporting/{dataset}/metrics/{task}/{method}.json",
    "encoder": "data/06_models/{dataset}/pretrained/{corpus}/{method}_encoder.pt",
    "pretrain_history": "data/07_model_output/{dataset}/pretrain/{corpus}/{method}_history.json",
    "next_item_split": PREPARED_PATHS["next_item_split"],
    "users": "data/02_intermediate/{dataset}/users.parquet",
}


@dataclass
class RunnerConfig:
    project_dir: Path
    envs: dict[str, str | None]  # dataset -> run-environment (None: Kedro's default)
    threads: int = 1
    timeout_s: float | None = None
    paths: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PATHS))
    representation: RepresentationConfig = field(default_factory=RepresentationConfig)
    python: str = sys.executable
    # each `kedro run`'s output goes to <log_dir>/<cell>.log as it runs (`tail -f` follows a
    # long cell); relative to project_dir
    log_dir: str = "logs/cells"


def run_missing(
    cells: list[Cell],
    store: CellStore,
    config: RunnerConfig,
    max_new: int | None = None,
    *,
    also: Sequence[CellStore] = (),
    prepared: set[str] | None = None,
    on_saved: Callable[[Cell, Path], None] | None = None,
) -> list[dict[str, Any]]:
    """Compute the cells the store lacks, in the given order, at most ``max_new`` of them: the
    one loop that every study (the report, the quality grid, the transfer study) runs.

    A cell stored in one of the ``also`` stores (another study's cells of the same settings)
    counts as present. Each dataset is prepared once per sitting unless it is in ``prepared``
    already. A failing cell is logged and listed, and the sitting goes on: it stays missing,
    and the summary says so. ``on_saved`` is called after each new cell (a study rewrites its
    summary there). Returns one entry per cell attempted.
    """
    log: list[dict[str, Any]] = []
    prepared = set(prepared or ())
    missing = [c for c in store.missing(cells) if not any(other.has(c) for other in also)]
    for cell in missing:
        if max_new is not None and len(log) >= max_new:
            break
        if cell.dataset not in prepared:
            prepare(cell.dataset, config)
            prepared.add(cell.dataset)
        try:
            result = run_cell(cell, config)
        except RuntimeError as error:
            logger.error("cell %s failed: %s", cell.label(), str(error)[-2000:])
            log.append({"cell": cell.as_dict(), "failed": str(error)[-2000:]})
            continue
        path = store.save(cell, result)
        logger.info("saved %s (%.0f s)", path, result["wall_s"])
        log.append({"cell": cell.as_dict(), "wall_s": result["wall_s"], "path": str(path)})
        if on_saved is not None:
            on_saved(cell, path)
    return log


def prepare(dataset: str, config: RunnerConfig) -> None:
    """Ingest, sequences and views of a dataset (cheap beside training), once per sitting."""
    kedro(config, dataset, ["--pipelines", PREPARE_PIPELINES], {}, log_name=f"{dataset}_prepare")


def environment(envs: dict[str, str | None], dataset: str) -> str | None:
    """The run-environment of a dataset; an unknown dataset is refused by name."""
    if dataset not in envs:
        raise ValueError(
            f"dataset {dataset!r} has no run-environment in report.profiles.<profile>.envs; "
            f"known: {sorted(envs)}"
        )
    return envs[dataset]


def settings_resolver(
    project_dir: Path, envs: dict[str, str | None]
) -> Callable[[Cell], dict[str, Any]]:
    """Cell -> the settings its `kedro run` resolves today (a :class:`CellStore` compares them
    with those a stored cell recorded)."""

    @functools.cache
    def settings(cell: Cell) -> dict[str, Any]:
        return cell_settings(cell, project_dir, environment(envs, cell.dataset), kedro_params(cell))

    return settings


def run_cell(cell: Cell, config: RunnerConfig) -> dict[str, Any]:
    """The cell's nodes in one `kedro run`; returns {"cell", "wall_s", "record", "settings",
    "code"} as stored (the settings the run resolved, see ``experiments.settings``, and the
    commit it ran at)."""
    params = kedro_params(cell)
    env = environment(config.envs, cell.dataset)
    settings = cell_settings(cell, config.project_dir, env, params)
    started = time.perf_counter()
    output = _output_folder(cell, config)
    before = _versions(output)
    log_name = cell_log_name(cell)
    logger.info("cell %s: progress in %s", cell.label(), log_path(config, log_name))
    nodes = ["--nodes", ",".join(kedro_nodes(cell))]
    if reshapes_sequences(cell):
        kedro(config, cell.dataset, ["--pipelines", "sequences"], params, log_name=log_name)
    kedro(config, cell.dataset, nodes, params, log_name=log_name)
    wall_s = time.perf_counter() - started
    version = _new_version(output, before)
    if cell.task == PRETRAIN_TASK:
        record = _pretrain_record(cell, config, version)
    else:
        record = json.loads((version / output.name).read_text())
    if uses_views(cell):  # leave the dataset's view policy as its parameters say
        kedro(config, cell.dataset, ["--nodes", VIEW_POLICY_NODE], {}, log_name=log_name)
    if reshapes_sequences(cell):  # and its tables
        kedro(config, cell.dataset, ["--pipelines", "sequences"], {}, log_name=log_name)
    return {
        "cell": cell.as_dict(),
        "wall_s": wall_s,
        "record": record,
        "settings": settings,
        "code": code_state(config.project_dir),
    }


def code_state(project_dir: Path) -> dict[str, object]:
    """The commit a cell ran at, and whether tracked files differed from it (empty outside a
    git checkout)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=project_dir, capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return (
        {"commit": commit, "modified": bool(git("status", "--porcelain", "-uno"))} if commit else {}
    )


def cell_log_name(cell: Cell) -> str:
    """The cell's log file stem, as unique as its stored result's path."""
    return cell.relative_path.with_suffix("").as_posix().replace("/", "_")


def log_path(config: RunnerConfig, name: str) -> Path:
    return Path(config.project_dir) / config.log_dir / f"{name}.log"


def kedro(
    config: RunnerConfig, dataset: str, args: list[str], params: dict, log_name: str = "kedro"
) -> None:
    """One `kedro run`, its output appended to ``log_path(config, log_name)`` as it runs."""
    env = environment(config.envs, dataset)
    command = [config.python, "-m", "kedro", "run", *(["--env", env] if env else []), *args]
    log = log_path(config, log_name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, log.open("a") as handle:
        if params:
            path = Path(folder) / "cell.yml"
            path.write_text(yaml.safe_dump({"run": {"params": params}}))
            command += ["--config", str(path)]
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(
            command,
            cwd=config.project_dir,
            env={**os.environ, "CLUE_NUM_THREADS": str(config.threads)},
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=config.timeout_s,
        )
    if result.returncode:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(command)} (params {params}) failed (log {log}):\n{tail}")


def _output_folder(cell: Cell, config: RunnerConfig) -> Path:
    """The versioned catalog folder the cell's last node writes (metrics or encoder)."""
    if cell.task == PRETRAIN_TASK:
        template = config.paths["encoder"]
        fields = {"dataset": cell.dataset, "corpus": "next_item", "method": cell.method}
    else:
        template = config.paths["metrics"]
        fields = {"dataset": cell.dataset, "task": cell.task, "method": cell.method}
    return Path(config.project_dir) / template.format(**fields)


def _versions(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _new_version(folder: Path, before: set[str]) -> Path:
    """The version this run wrote: new since ``before`` (another process may write others)."""
    new = sorted(_versions(folder) - before)
    if not new:
        raise RuntimeError(f"the kedro run wrote no new version under {folder}")
    return folder / new[-1]


def _pretrain_record(cell: Cell, config: RunnerConfig, version: Path) -> dict[str, Any]:
    fields = {"dataset": cell.dataset, "corpus": "next_item", "method": cell.method}
    root = Path(config.project_dir)
    history_path = root / config.paths["pretrain_history"].format(**fields)
    checkpoint = torch.load(
        version / Path(config.paths["encoder"].format(**fields)).name,
        map_location="cpu",
        weights_only=True,
    )
    split_path = root / config.paths["next_item_split"].format(dataset=cell.dataset)
    corpus = pd.read_parquet(split_path, columns=["user_id", "train"])
    users_path = root / config.paths["users"].format(dataset=cell.dataset)
    users = None
    if users_path.exists():
        users = corpus[["user_id"]].merge(pd.read_parquet(users_path), on="user_id", how="left")
    return {
        "task": PRETRAIN_TASK,
        "method": cell.method,
        "dataset": cell.dataset,
        "corpus": "next_item (training part of each sequence)",
        "history": json.loads(history_path.read_text()),
        "representation": summarise_encoder(
            checkpoint, corpus["train"], config.representation, users
        ),
    }
