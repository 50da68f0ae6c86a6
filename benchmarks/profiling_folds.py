"""User profiling on MovieLens-1M with 5 folds over users: do user vectors carry what the bag
of a user's items carries?

    .venv/bin/python -m benchmarks.profiling_folds [--rows linear200 clue_zero ...] [--max-cells N]
    .venv/bin/python -m benchmarks.profiling_folds --summary-only

Every user tested once (``sequences.profiling.folds``). Rows: the floor (``linear``) over the
last 50, 200 or every item, the encoder methods over the last 200, one change a row; each paired
by fold with the floor over 200, Holm across the study. Cells: `kedro run`s, stored, kept."""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks.common import REPO, RESULTS, show_cell_progress, write_results
from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.runner import RunnerConfig, run_missing, settings_resolver
from clue_pipeline.experiments.statistics import corrected, paired
from clue_pipeline.experiments.store import CellStore

DATASET, FOLDS, SEED = "ml-1m", 5, 0
ATTRIBUTES = ("gender", "age", "occupation")
MEAN = {"finetune.classifier.readout": "mean_items"}
LR = {"finetune.classifier.probe": "logistic_regression"}
BAG, BAG4 = ({"pretrain.objective.bag_weight": w} for w in (1.0, 4.0))
# key -> (row name, method, history read[, overrides]); the majority rate is in every record
VARIANTS = {
    "linear50": ("linear, last 50", "linear", 50),
    "linear200": ("linear, last 200", "linear", 200),
    "clue_zero": ("CLUE-Zero, last 200", "clue_zero", 200),
    "clue_probe": ("CLUE probe (frozen), last 200", "clue_probe", 200),
    "linear_all": ("linear, every item", "linear", 2000),
    "clue": ("CLUE, last 200", "clue", 200),
    "clue_probe_mean": ("CLUE probe (frozen), mean of item states", "clue_probe", 200, MEAN),
    "clue_mean": ("CLUE, mean of item states", "clue", 200, MEAN),
    "clue_zero_mean": ("CLUE-Zero, mean of item states", "clue_zero", 200, MEAN),
    "clue_lr_probe": ("CLUE frozen, logistic probe, [UR]", "clue_probe", 200, LR),
    "clue_lr_probe_mean": ("CLUE frozen, logistic probe, item mean", "clue_probe", 200, MEAN | LR),
    "clue_bag_lr_probe": ("CLUE + bag term, frozen, logistic probe", "clue_probe", 200, LR | BAG),
    "clue_bag4_lr_probe": ("CLUE + bag term x4, frozen, LR probe", "clue_probe", 200, LR | BAG4),
}
FLOOR = "linear, last 200"
STORE = CellStore(
    RESULTS / "profiling_folds" / "cells", settings_resolver(REPO, {DATASET: DATASET})
)


def cells(keys: list[str] | None = None) -> dict[str, list[Cell]]:
    """Row name -> its five fold cells (the rows of ``keys``, every row by default)."""
    chosen = [VARIANTS[k] for k in keys] if keys else list(VARIANTS.values())
    return {
        variant[0]: [
            Cell.create(
                DATASET,
                "profiling",
                variant[1],
                SEED,
                overrides={
                    "encoder.max_len": variant[2],
                    "sequences.profiling.folds": FOLDS,
                    "sequences.profiling.fold": fold,
                    **(variant[3] if len(variant) > 3 else {}),
                },
            )
            for fold in range(FOLDS)
        ]
        for variant in chosen
    }


def fold_accuracies(row_cells: list[Cell], key: str = "accuracy") -> dict[str, list]:
    """Attribute -> ``key`` (accuracy, majority_rate) per fold (None: the cell is missing)."""
    out: dict[str, list[float | None]] = {a: [] for a in ATTRIBUTES}
    for cell in row_cells:
        stored = STORE.load(cell)
        metrics = stored["record"].get("metrics", {}) if stored else {}
        for attribute in ATTRIBUTES:
            value = metrics.get(attribute, {}).get(key)
            out[attribute].append(None if value is None else float(value))
    return out


def summarise(grid: dict[str, list[Cell]]) -> dict:
    folds = {"majority class": fold_accuracies(grid[FLOOR], "majority_rate")}
    folds |= {row: fold_accuracies(row_cells) for row, row_cells in grid.items()}
    rows = [
        {
            "row": row,
            "attribute": attribute,
            "folds_done": sum(v is not None for v in values),
            "mean": statistics.mean(done)
            if (done := [v for v in values if v is not None])
            else None,
            "folds": values,
        }
        for row, by_attribute in folds.items()
        for attribute, values in by_attribute.items()
    ]
    tests, keys = [], []
    for row, by_attribute in folds.items():
        for attribute in ATTRIBUTES if row not in (FLOOR, "majority class") else ():
            pairs = [
                (x, y)
                for x, y in zip(by_attribute[attribute], folds[FLOOR][attribute], strict=True)
                if x is not None and y is not None
            ]
            if len(pairs) < 2:
                continue
            tests.append(paired([x for x, _ in pairs], [y for _, y in pairs]))
            keys.append({"row": row, "attribute": attribute, "against": FLOOR})
    comparisons = [{**k, **c} for k, c in zip(keys, corrected(tests), strict=True)]
    missing = [c.label() for cs in grid.values() for c in cs if not STORE.has(c)]
    payload = {
        "protocol": {
            "dataset": DATASET,
            "folds": FOLDS,
            "seed": SEED,
            "test": "paired t over folds (same users per fold), two-sided",
            "correction": "Holm-Bonferroni across this study's comparisons",
        },
        "rows": rows,
        "comparisons": comparisons,
        "missing": missing,
    }
    write_results("profiling_folds", payload, markdown(rows, comparisons, missing))
    return payload


def markdown(rows: list[dict], comparisons: list[dict], missing: list[str]) -> str:
    pct = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"MovieLens-1M (users 1..2999, the `ml-1m` environment), {FOLDS} folds over users, seed "
        f"{SEED}: every user tested once. Accuracy per attribute, mean over folds (folds "
        "done). Comparisons: paired t over the folds both rows have (`n`) against the floor "
        f"({FLOOR}), two-sided; `p_holm` Holm-corrected across the comparisons below; a "
        "difference that does not survive the correction is `not shown`.",
        "",
        "| row | " + " | ".join(ATTRIBUTES) + " |",
        "| --- |" + " --- |" * len(ATTRIBUTES),
    ]
    by_row: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_row.setdefault(r["row"], {})[r["attribute"]] = r
    for row, cols in by_row.items():
        cells_text = [f"{pct(cols[a]['mean'])} ({cols[a]['folds_done']})" for a in ATTRIBUTES]
        lines.append(f"| {row} | " + " | ".join(cells_text) + " |")
    lines += [
        "",
        "| row | attribute | folds | diff vs floor | 95 % interval | p | p_holm | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        interval = "-" if c["low"] is None else f"[{c['low']:+.3f}, {c['high']:+.3f}]"
        p = "-" if c["p"] is None else f"{c['p']:.3f}"
        p_holm = "-" if c["p_holm"] is None else f"{c['p_holm']:.3f}"
        lines.append(
            f"| {c['row']} | {c['attribute']} | {c['n']} | {c['diff']:+.3f} | {interval} | {p} "
            f"| {p_holm} | {c['verdict_holm']} |"
        )
    lines += ["", f"## Missing cells ({len(missing)})", ""]
    lines += [f"- {label}" for label in missing] or ["- none"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-cells", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--rows", nargs="+", choices=sorted(VARIANTS), help="rows to compute")
    args = parser.parse_args()
    grid = cells()
    if not args.summary_only:
        show_cell_progress()
        run_missing(
            [cell for row_cells in cells(args.rows).values() for cell in row_cells],
            STORE,
            RunnerConfig(project_dir=REPO, envs={DATASET: DATASET}, threads=args.threads),
            args.max_cells,
            on_saved=lambda *_: summarise(grid),
        )
    print(json.dumps({"missing": len(summarise(grid)["missing"])}))


if __name__ == "__main__":
    main()
