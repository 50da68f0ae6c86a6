"""The transfer protocol: does CLUE pre-training help when labels are scarce?

    .venv/bin/python -m benchmarks.transfer [--datasets beauty ml-1m ml-100k] [--max-cells N]
    .venv/bin/python -m benchmarks.transfer --summary-only
    .venv/bin/python -m benchmarks.transfer --clue-override pretrain.objective.name=infonce

Pre-training reads every user (transductive reuse) or, with ``--override
sequences.transfer.protocol=inductive``, half of them; fine-tuning sees the labels of a seeded
share of the fine-tuned users (``finetune.train_user_fraction``). CLUE against CLUE-Zero and
masked items, 3 seeds, paired t over seeds with Holm's correction. Each cell is one `kedro run`
stored under benchmarks/results/<name>/cells/ (a 100 % cell without overrides is read from the
quality grid's store); protocols, budgets and studies: docs/transfer.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import (
    COMPARISON_HEAD,
    REPO,
    RESULTS,
    comparison_cells,
    comparison_note,
    markdown_table,
    paired_by_seed,
    show_cell_progress,
    write_results,
)
from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.runner import RunnerConfig, run_missing, settings_resolver
from clue_pipeline.experiments.settings import resolved_settings
from clue_pipeline.experiments.statistics import ALPHA
from clue_pipeline.experiments.store import CellStore

TASKS = {"beauty": "next_item", "ml-1m": "profiling", "ml-100k": "coldstart"}
METHODS = ("clue", "clue_zero", "mip")
FRACTIONS = (0.05, 0.1, 0.4, 1.0)
SEEDS = (0, 1, 2)
PROFILE_ATTRIBUTES = ("gender", "age", "occupation")
METRICS = {
    "next_item": ("ndcg@10", "recall@10"),
    "coldstart": ("mrr@10", "recall@10"),
    "profiling": tuple(f"{a}/accuracy" for a in PROFILE_ATTRIBUTES),
}
ENVS = {dataset: dataset for dataset in TASKS}  # each dataset's run-environment
PROTOCOL_NOTES = {  # sequences.transfer.protocol (src/clue_pipeline/data/transfer.py)
    "transductive": "Protocol: transductive reuse. Pre-training reads every user's training "
    "sequence, the fine-tuned and tested users' included, so a gain is reuse, not transfer.",
    "inductive": "Protocol: inductive. A seeded half of the users pre-trains; the other half is "
    "fine-tuned and tested, so no tested user's sequence was pre-trained on: a gain is transfer.",
}
QUALITY_STORE = CellStore(RESULTS / "quality" / "cells", settings_resolver(REPO, ENVS))


def small_share(dataset: str, fraction: float) -> dict[str, Any]:
    """The overrides of a cell below 100 % of the users: the same budget in steps."""
    if fraction >= 1.0:
        return {}
    train = resolved_settings(REPO, ENVS[dataset], {}, ("finetune",))
    epochs = math.ceil(int(train["finetune.train.epochs"]) / fraction)
    wait = math.ceil(int(train.get("finetune.train.patience") or 0) / fraction)
    return {
        "finetune.train.drop_last": False,
        "finetune.train.epochs": epochs,
        "finetune.train.min_epochs": min(wait, epochs),
    }


def grid(
    datasets: list[str],
    fractions: tuple[float, ...] = FRACTIONS,
    seeds: tuple[int, ...] = SEEDS,
    common: dict[str, Any] | None = None,
    clue_only: dict[str, Any] | None = None,
    methods: tuple[str, ...] = METHODS,
    task: str | None = None,
) -> list[Cell]:
    """Every (dataset, method, share, seed); ``clue_only`` overrides change the CLUE cells only
    (a pre-training objective, say), ``common`` ones every cell (a budget); ``task`` replaces
    each dataset's own downstream task (``TASKS``)."""
    cells = []
    for dataset in datasets:
        for fraction in fractions:
            for method in methods:
                overrides = {
                    **(common or {}),
                    **small_share(dataset, fraction),
                    **((clue_only or {}) if method == "clue" else {}),
                }
                cells += [
                    Cell.create(dataset, task or TASKS[dataset], method, seed, fraction, overrides)
                    for seed in seeds
                ]
    return cells


def load(cell: Cell, store: CellStore) -> dict[str, Any] | None:
    """The study's own cell, or the quality grid's cell of the same settings (a cell's key is
    all of its settings, so the same key is the same run)."""
    return store.load(cell) or QUALITY_STORE.load(cell)


def missing_label(cell: Cell, store: CellStore) -> str:
    """The cell's label; a stale copy in either store names the settings that changed."""
    for where in (store, QUALITY_STORE):
        if where.stale(cell):
            return where.missing_label(cell)
    return cell.label()


def values(record: dict[str, Any], task: str) -> dict[str, float]:
    """The compared metrics of one stored cell (a skipped task gives none)."""
    inner = record["record"]
    if "skipped" in inner:
        return {}
    metrics = inner["metrics"]
    if task == "profiling":
        return {
            f"{a}/accuracy": float(metrics[a]["accuracy"])
            for a in PROFILE_ATTRIBUTES
            if a in metrics
        }
    return {name: float(metrics[name]) for name in METRICS[task] if name in metrics}


def summarise(
    cells: list[Cell],
    store: CellStore,
    name: str,
    note: str = "",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mean ± std per (dataset, method, share) and the CLUE comparisons, written as ``name``."""
    series: dict[tuple, dict[str, dict[int, float]]] = {}
    missing = []
    for cell in cells:
        record = load(cell, store)
        if record is None:
            missing.append(cell)
            continue
        key = (cell.dataset, cell.task, cell.fraction, cell.method)
        for metric, value in values(record, cell.task).items():
            series.setdefault(key, {}).setdefault(metric, {})[cell.seed] = value
    rows = [
        {
            "dataset": dataset,
            "task": task,
            "users": fraction,
            "method": method,
            "metric": metric,
            "seeds": len(by_seed),
            "mean": statistics.mean(by_seed.values()),
            "std": statistics.stdev(by_seed.values()) if len(by_seed) > 1 else None,
            "values": [by_seed[s] for s in sorted(by_seed)],
        }
        for (dataset, task, fraction, method), by_metric in sorted(series.items())
        for metric, by_seed in sorted(by_metric.items())
    ]
    comparisons = paired_by_seed(
        [
            (
                {"dataset": d, "task": t, "users": f, "metric": metric, "against": rival},
                by_metric[metric],
                series[(d, t, f, rival)][metric],
            )
            for (d, t, f, method), by_metric in sorted(series.items())
            if method == "clue"
            for rival in ("clue_zero", "mip")
            for metric in METRICS[t]
            if metric in by_metric and metric in series.get((d, t, f, rival), {})
        ]
    )
    protocol = (overrides or {}).get("every", {}).get("sequences.transfer.protocol", "transductive")
    payload = {
        "protocol": {
            "transfer": protocol,
            "fractions": list(FRACTIONS),
            "seeds": list(SEEDS),
            "alpha": ALPHA,
            "test": "paired t over seeds, Holm-corrected across the comparisons",
            "tasks": {cell.dataset: cell.task for cell in cells},
        },
        "rows": rows,
        "comparisons": comparisons,
        "missing": [c.as_dict() for c in missing],
        "cells_total": len(cells),
        "overrides": overrides or {},
    }
    labels = [missing_label(cell, store) for cell in missing]
    note = PROTOCOL_NOTES[protocol] + (f" {note}" if note else "")
    write_results(name, payload, markdown(rows, comparisons, labels, len(cells), note))
    return payload


def markdown(rows, comparisons, missing, total: int, note: str) -> str:
    lines = [
        f"{note} Fine-tuning on a seeded share of the fine-tuned users' labels (validation and "
        "test whole). Mean ± std over seeds. Next-item metrics rank every item, history items "
        "not excluded.",
        "",
        "## Comparisons",
        "",
        comparison_note(comparisons),
        "",
        *markdown_table(
            ("dataset", "task", "users", "metric", "CLUE vs", *COMPARISON_HEAD),
            [
                (c["dataset"], c["task"], f"{c['users']:.0%}", c["metric"], c["against"])
                + comparison_cells(c)
                for c in comparisons
            ],
        ),
        "",
        "## Cells",
        "",
        *markdown_table(
            ("dataset", "task", "users", "method", "metric", "seeds", "mean ± std"),
            [
                (r["dataset"], r["task"], f"{r['users']:.0%}", r["method"], r["metric"])
                + (r["seeds"], f"{r['mean']:.4f}" + _spread(r["std"]))
                for r in rows
            ],
        ),
    ]
    lines += ["", f"## Missing cells ({len(missing)} of {total})", ""]
    lines += [f"- {label}" for label in missing] or ["- none"]
    return "\n".join(lines)


def _spread(std: float | None) -> str:
    return "" if std is None else f" ± {std:.4f}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, values read as YAML would (numbers, booleans, lists)."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"override {item!r}: expected dotted.key=value")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max-cells", type=int, default=None, help="stop after N new cells")
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per kedro run")
    parser.add_argument(
        "--override", action="append", default=[], help="dotted.key=value for every cell"
    )
    parser.add_argument(
        "--clue-override",
        action="append",
        default=[],
        help="dotted.key=value for the CLUE cells only, e.g. pretrain.objective.name=infonce",
    )
    parser.add_argument("--task", choices=list(METRICS), help="instead of each dataset's own")
    parser.add_argument("--name", default="transfer", help="results file stem")
    parser.add_argument(
        "--store", type=Path, default=None, help="cell folder (default results/<name>/cells)"
    )
    parser.add_argument(
        "--skip-prepare", action="store_true", help="ingest/sequences outputs are there already"
    )
    args = parser.parse_args()
    common, clue_only = parse_overrides(args.override), parse_overrides(args.clue_override)
    cells = grid(
        args.datasets,
        tuple(args.fractions),
        tuple(args.seeds),
        common,
        clue_only,
        tuple(args.methods),
        args.task,
    )
    store = CellStore(args.store or RESULTS / args.name / "cells", settings_resolver(REPO, ENVS))
    note = ""
    overrides = {"every": common, "clue": clue_only}
    if common or clue_only:
        note = f"Overrides: every cell {common or '{}'}; CLUE cells {clue_only or '{}'}."
    if not args.summary_only:
        show_cell_progress()
        run_missing(
            # the widest gap first: every method at the smallest share, seed by seed
            sorted(cells, key=lambda c: (c.seed, c.fraction, c.dataset)),
            store,
            RunnerConfig(project_dir=REPO, envs=ENVS, threads=args.threads),
            args.max_cells,
            also=[QUALITY_STORE],
            prepared=set(args.datasets) if args.skip_prepare else None,
            on_saved=lambda *_: summarise(cells, store, args.name, note, overrides),
        )
    payload = summarise(cells, store, args.name, note, overrides)
    print(json.dumps({"cells": len(cells), "missing": len(payload["missing"])}))


if __name__ == "__main__":
    main()
