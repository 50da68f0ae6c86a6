"""Quality of every method on the public datasets, cell by cell, resumable.

    .venv/bin/python -m benchmarks.quality [--datasets beauty ml-100k] [--max-cells N]
    .venv/bin/python -m benchmarks.quality --summary-only

A cell is (dataset, task, method, seed, share of training users): the cells of
`clue_pipeline.experiments` without parameter overrides, which the `report` pipeline's `full`
profile reuses. Each runs the project's own nodes as `kedro run --env <dataset> --nodes ...` in
its own process, so the numbers are those `kedro run --env <env>` gives; its metrics are saved
to benchmarks/results/quality/cells/... as soon as it finishes and a saved cell is never
recomputed. The summary (results/quality.{json,md}) lists the cells still missing too.
"""

from __future__ import annotations

import argparse
import json
import statistics

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
from benchmarks.profiling_folds import markdown as folds_markdown
from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.runner import RunnerConfig, run_missing, settings_resolver
from clue_pipeline.experiments.settings import settings_changes
from clue_pipeline.experiments.store import CellStore

CELLS = RESULTS / "quality" / "cells"
SEEDS = (0, 1, 2)
SEEDED_METHODS = ("clue", "clue_zero")  # three seeds; other rivals one seed at first
SPARSITY = (0.4, 0.6, 0.8)

PROBES_AND_FLOOR = ("clue_probe", "mip_probe", "pop")
NEXT_ITEM = ("clue", "clue_zero", "mip", "s3rec", "gru", "cnn", "caser", *PROBES_AND_FLOOR)
USER_TASKS = ("clue", "clue_zero", "mip", "s3rec", "nfm", "deepfm", *PROBES_AND_FLOOR)
GRID = {
    "beauty": {"next_item": NEXT_ITEM},
    "sports": {"next_item": NEXT_ITEM},
    "ml-100k": {"next_item": NEXT_ITEM, "profiling": USER_TASKS, "coldstart": USER_TASKS},
    "ml-1m": {"next_item": NEXT_ITEM, "profiling": USER_TASKS},
}
ENVS = {dataset: dataset for dataset in GRID}  # each dataset's run-environment
STORE = CellStore(CELLS, settings_resolver(REPO, ENVS))
EXCLUDED_PREFIX = "excl. "  # the same metric with the user's history removed from the ranking
HEADLINE = {
    "next_item": ("recall@10", "ndcg@10", "mrr@10"),
    "coldstart": ("mrr@10", "recall@10"),
    "profiling": ("accuracy", "macro_f1", "majority_rate"),
}


def grid(datasets: list[str]) -> list[Cell]:
    cells = []
    for dataset in datasets:
        for task, methods in GRID[dataset].items():
            for method in methods:
                seeds = SEEDS if method in SEEDED_METHODS else SEEDS[:1]
                cells += [Cell.create(dataset, task, method, seed) for seed in seeds]
                if task != "next_item" and method in ("clue", "clue_zero", "mip"):
                    cells += [Cell.create(dataset, task, method, 0, f) for f in SPARSITY]
    return cells


def runner(threads: int = 1) -> RunnerConfig:
    """Each dataset runs in its own run-environment, which sets its paper-sized budget."""
    return RunnerConfig(project_dir=REPO, envs=ENVS, threads=threads)


def headline(record: dict, task: str) -> dict[str, float]:
    if "skipped" in record:
        return {}
    metrics = record["metrics"]
    if task == "profiling":
        return {f"{a}/{k}": v[k] for a, v in metrics.items() for k in HEADLINE[task]}
    values = {k: metrics[k] for k in HEADLINE[task]}
    excluded = record.get("protocols", {}).get("history_excluded")
    if excluded is not None:  # cells evaluated since both protocols are recorded
        values.update({f"{EXCLUDED_PREFIX}{k}": excluded[k] for k in HEADLINE[task]})
    return values


def gpu_runs() -> dict[tuple, dict]:
    """Runs of ``benchmarks/gpu_quality.py`` (the Amazon next-item cells with the same settings,
    measured on a GPU machine without Kedro), by (dataset, method, seed). A run whose recorded
    run-environment settings differ from today's (an earlier recipe) does not count."""
    from benchmarks.gpu_quality import settings_of

    runs = {}
    for path in sorted((RESULTS / "gpu_quality").glob("*.json")):
        record = json.loads(path.read_text())
        for run in record.get("runs", []):
            recorded = (record.get("settings") or {}).get(run["dataset"])
            if not run.get("best") or not isinstance(recorded, dict):
                continue
            if not settings_changes(recorded, settings_of(run["dataset"])):
                runs[(run["dataset"], run["method"], run["seed"])] = run
    return runs


# CLUE with the paper's objective (SimSiam alone), as the report's experiments run it: shown
# beside the default's rows where stored (`<method>_simsiam`), never counted as missing
PAPER_OBJECTIVE = {"pretrain.objective.next_item_weight": 0.0}
PAPER_SUFFIX = "_simsiam"


def paper_twins(cells: list[Cell]) -> list[Cell]:
    """The stored cells of CLUE's methods run with the paper's objective, for the grid's cells."""
    twins = [
        Cell.create(c.dataset, c.task, c.method, c.seed, c.fraction, PAPER_OBJECTIVE)
        for c in cells
        if c.method in ("clue", "clue_probe")
    ]
    return [c for c in twins if STORE.has(c)]


def summarise(cells: list[Cell]) -> None:
    """Mean ± std per (dataset, task, method, share of users) over the saved cells, and CLUE
    against CLUE-Zero seed by seed; a cell not run through Kedro but measured by
    ``benchmarks/gpu_quality.py`` counts, and says so."""
    groups, missing = collect(cells)
    rows = [summary_row(key, values) for key, values in sorted(groups.items())]
    compared = comparisons(groups)
    lines = [NOTE, "", *tables(rows), *comparison_table(compared)]
    lines += ["", f"## Missing cells ({len(missing)} of {len(cells)})", ""]
    lines += [f"- {STORE.missing_label(c)}" for c in missing] or ["- none"]
    payload = {"rows": rows, "comparisons": compared, "missing": [c.as_dict() for c in missing]}
    if (folds_file := RESULTS / "profiling_folds.json").exists():  # profiling_folds.py
        folds = json.loads(folds_file.read_text())
        keys = ("protocol", "rows", "comparisons", "changes", "missing")
        table = folds_markdown(*map(folds.get, keys[1:]))
        lines += ["", "## profiling, 5 folds over users (`profiling_folds.md`)", "", table]
        payload["profiling_folds"] = {k: folds.get(k) for k in keys[:-1]}
    write_results("quality", {**payload, "cells_total": len(cells)}, "\n".join(lines))


def collect(cells: list[Cell]) -> tuple[dict[tuple, list[dict]], list[Cell]]:
    """Each (dataset, task, method, share)'s seeds, as headline values (``_seed``, ``_wall_s``,
    ``_gpu``, ``_capped`` say where they come from), and the cells measured nowhere."""
    groups: dict[tuple, list[dict]] = {}
    missing = []
    on_gpu = gpu_runs()
    for cell in [*cells, *paper_twins(cells)]:
        method = cell.method + (PAPER_SUFFIX if cell.overrides else "")
        record = STORE.load(cell)
        gpu = on_gpu.get((cell.dataset, method, cell.seed)) if cell.fraction == 1.0 else None
        if record is not None:
            values = {**headline(record["record"], cell.task), "_wall_s": record["wall_s"]}
        elif gpu is not None and cell.task == "next_item":
            values = {k: gpu["best"]["test"][k] for k in HEADLINE["next_item"]}
            values.update(_gpu=True, _capped=gpu.get("status") != "done")
        else:
            missing.append(cell)
            continue
        key = (cell.dataset, cell.task, method, cell.fraction)
        groups.setdefault(key, []).append({**values, "_seed": cell.seed})
    return groups, missing


def summary_row(key: tuple, values: list[dict]) -> dict:
    dataset, task, method, fraction = key
    row = {"dataset": dataset, "task": task, "method": method, "users": fraction}
    row["seeds"] = len(values)
    # metrics every seed has (cells scored before both protocols were recorded lack some)
    shared = set.intersection(*(set(v) for v in values))
    for name in sorted(k for k in shared if not k.startswith("_")):
        series = [v[name] for v in values]
        row[name] = statistics.mean(series)
        row[f"{name}_std"] = statistics.stdev(series) if len(series) > 1 else None
    walls = [v["_wall_s"] for v in values if "_wall_s" in v]
    row["wall_s"] = statistics.mean(walls) if walls else None
    row["history_excluded"] = False  # the headline metrics; "excl. *" columns: True
    row["on_gpu"] = sum(bool(v.get("_gpu")) for v in values)
    row["capped"] = sum(bool(v.get("_capped")) for v in values)
    return row


NOTE = (
    "Full ranking over all items (no sampled negatives), history items not excluded "
    "(`history_excluded: false` in the JSON rows); columns `excl. *` give the same metric "
    "with the user's own history removed from the ranking (the protocol of published "
    "numbers on the S3-Rec files), for cells evaluated since both are recorded. "
    "Cells whose record has `selection` test each protocol with the model selected under it; "
    "earlier ones test both with the one selected under history kept. "
    "Profiling: accuracy and macro-F1 on the 15 % test users. Mean (± std over seeds). "
    "Seeds 'on GPU' were measured by `benchmarks/gpu_quality.py` with the same settings "
    "(`benchmarks/results/gpu_quality/`), not through Kedro; 'capped' ones stopped at that "
    "run's time budget, before early stopping. Wall s: Kedro cells only. `clue` and "
    "`clue_probe` pre-train with the default objective (SimSiam + 1.0 x next items); "
    "`clue_simsiam` and `clue_probe_simsiam` with the paper's, SimSiam alone "
    "(`pretrain.objective.next_item_weight: 0.0`), the cells the report's experiments read."
)
META = {"dataset", "task", "method", "users", "seeds", "wall_s", "on_gpu", "capped"}


def tables(rows: list[dict]) -> list[str]:
    lines = []
    for task in ("next_item", "coldstart", "profiling"):
        part = [r for r in rows if r["task"] == task]
        if not part:
            continue
        names = sorted(
            {k for r in part for k in r if k not in META | {"history_excluded"}}
            - {k for r in part for k in r if k.endswith("_std")}
        )
        lines += [f"## {task}", "", "| dataset | method | users | seeds | " + " | ".join(names)]
        lines[-1] += " | wall s |"
        lines.append("|" + " --- |" * (len(names) + 5))
        lines += [table_line(r, names) for r in part] + [""]
    return lines


def table_line(r: dict, names: list[str]) -> str:
    cells_text = [
        f"{r[n]:.4f}" + (f" ± {r[n + '_std']:.4f}" if r.get(n + "_std") is not None else "")
        if n in r
        else ""
        for n in names
    ]
    seeds = str(r["seeds"])
    if r["on_gpu"]:
        seeds += f" ({r['on_gpu']} on GPU" + (f", {r['capped']} capped)" if r["capped"] else ")")
    wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
    return (
        f"| {r['dataset']} | {r['method']} | {int(r['users'] * 100)} % | {seeds} | "
        + " | ".join(cells_text)
        + f" | {wall} |"
    )


# CLUE (both objectives) against CLUE-Zero at the same seeds, on each task's primary metric
# (per attribute for profiling), one family for Holm's correction
COMPARED = (("clue", "clue_zero"), ("clue_simsiam", "clue_zero"))
PRIMARY = {"next_item": "ndcg@10", "coldstart": "mrr@10", "profiling": "accuracy"}


def comparisons(groups: dict[tuple, list[dict]]) -> list[dict]:
    pairs = []
    for (dataset, task, method, fraction), values in sorted(groups.items()):
        for rival in (b for a, b in COMPARED if a == method):
            other = groups.get((dataset, task, rival, fraction))
            if not other:
                continue
            mine, theirs = {v["_seed"]: v for v in values}, {v["_seed"]: v for v in other}
            if len(mine.keys() & theirs.keys()) < 2:  # one seed (the sparsity cells): no test
                continue
            metric = PRIMARY[task]
            shared = set.intersection(*(set(v) for v in [*values, *other]))
            for name in sorted(k for k in shared if k.split("/")[-1] == metric):
                label = {"dataset": dataset, "task": task, "users": fraction, "method": method}
                label.update(against=rival, metric=name)
                a, b = ({s: v[name] for s, v in side.items()} for side in (mine, theirs))
                pairs.append((label, a, b))
    return paired_by_seed(pairs)


def comparison_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    head = ("dataset", "task", "users", "metric", "method", "vs", *COMPARISON_HEAD)
    table = [
        (c["dataset"], c["task"], f"{int(c['users'] * 100)} %", c["metric"], c["method"])
        + (c["against"], *comparison_cells(c))
        for c in rows
    ]
    lines = ["## CLUE against CLUE-Zero", "", comparison_note(rows), ""]
    return [*lines, *markdown_table(head, table), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument(
        "--max-cells", type=int, default=None, help="stop after this many new cells"
    )
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of each cell's kedro run"
    )
    parser.add_argument("--tasks", nargs="+", default=None, help="only these tasks, in this order")
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds")
    parser.add_argument(
        "--skip-prepare",
        action="store_true",
        help="do not rerun ingest and sequences first: their outputs are there already, e.g. "
        "while another grid process works on the same dataset (which reads them)",
    )
    args = parser.parse_args()
    cells = grid(args.datasets)
    whole = grid(list(GRID))  # the summary always covers (and lists the gaps of) every dataset
    todo = [
        c
        for c in cells
        if (args.tasks is None or c.task in args.tasks)
        and (args.methods is None or c.method in args.methods)
        and (args.seeds is None or c.seed in args.seeds)
    ]
    # every method's first seed before further seeds and sparsity, so a partial grid
    # compares methods first
    todo.sort(
        key=lambda c: (
            args.tasks.index(c.task) if args.tasks else 0,
            c.fraction != 1.0,
            c.seed,
            -c.fraction,
        )
    )
    if not args.summary_only:
        show_cell_progress()
        run_missing(
            todo,
            STORE,
            runner(args.threads),
            args.max_cells,
            prepared=set(args.datasets) if args.skip_prepare else None,
            on_saved=lambda *_: summarise(whole),
        )
    summarise(whole)


if __name__ == "__main__":
    main()
