"""User profiling on ML-1M, 5 folds over users: do user vectors carry what a bag of items does?

    .venv/bin/python -m benchmarks.profiling_folds [--rows linear200 ...] [--summary-only]

Every user tested once; rows change one thing, paired by fold with the floor and their parent."""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks.common import REPO, RESULTS, paired_by_seed, show_cell_progress, write_results
from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.runner import RunnerConfig, run_missing, settings_resolver
from clue_pipeline.experiments.store import CellStore

DATASET, FOLDS, SEED = "ml-1m", 5, 0
ATTRIBUTES = ("gender", "age", "occupation")
MEAN, BOTH = ({"finetune.classifier.readout": r} for r in ("mean_items", "ur_and_mean_items"))
LR = {"finetune.classifier.probe": "logistic_regression"}
BAG1, BAG4, BAG16 = (LR | {"pretrain.objective.bag_weight": w} for w in (1.0, 4.0, 16.0))
LP_FT = {"pretrain.objective.bag_weight": 16.0, "finetune.classifier.head_init": "logistic_probe"}
WIDE = {"encoder.hidden": 128}  # a 128-wide user vector (item table and [UR] alike)
TFIDF = {"pretrain.objective.bag_targets": "tfidf"}  # the bag term weighs rare items more
WIDE_C = {"finetune.classifier.probe_c_grid": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}
E100 = {"pretrain.train.epochs": 100}  # the wide rows' bag loss still fell at epoch 50
W_T, W_C, W_B, W_E100 = (BAG16 | WIDE | x for x in (TFIDF, WIDE_C, BOTH, E100))  # changed
W_E100B = W_E100 | BOTH
W192, W192B, W192E = (BAG16 | {"encoder.hidden": 192} | r for r in ({}, BOTH, E100))  # wider
ADAMW = {"finetune.train.optimizer": "adamw", "finetune.train.weight_decay": 0.1}  # decoupled
BALANCED = {"finetune.classifier.class_weights": "balanced"}
VARIANTS = {  # key -> (row name, method, history read[, overrides])
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
    "clue_bag_lr_probe": ("CLUE + bag term, frozen, logistic probe", "clue_probe", 200, BAG1),
    "clue_bag4_lr_probe": ("CLUE + bag term x4, frozen, LR probe", "clue_probe", 200, BAG4),
    "clue_bag16_lr_probe": ("CLUE + bag term x16, frozen, LR probe", "clue_probe", 200, BAG16),
    "clue_bag16_lp_ft": ("CLUE + bag term x16, LR probe, then fine-tuned", "clue", 200, LP_FT),
    "wide_bag16_lr_probe": ("CLUE 128-wide + bag x16, LR probe", "clue_probe", 200, BAG16 | WIDE),
    "wide_bag16_lp_ft": ("CLUE 128-wide + bag x16, LP-FT", "clue", 200, LP_FT | WIDE),
    "tfidf_bag16_lr_probe": ("CLUE + TF-IDF bag x16, LR probe", "clue_probe", 200, BAG16 | TFIDF),
    "wide_tfidf_lr_probe": ("CLUE 128-wide + TF-IDF bag x16, LR probe", "clue_probe", 200, W_T),
    "wide_lr_c": ("CLUE 128-wide + bag x16, LR probe, C 0.001-3", "clue_probe", 200, W_C),
    "wide_both": ("CLUE 128-wide + bag x16, LR probe, [UR] and mean", "clue_probe", 200, W_B),
    "wide192_lr_probe": ("CLUE 192-wide + bag x16, LR probe", "clue_probe", 200, W192),
    "wide192_both": ("CLUE 192-wide + bag x16, LR probe, [UR] and mean", "clue_probe", 200, W192B),
    "wide_e100": ("CLUE 128-wide + bag x16, LR probe, 100 epochs", "clue_probe", 200, W_E100),
    "wide_e100_both": ("CLUE 128-wide, 100 epochs, [UR] and mean", "clue_probe", 200, W_E100B),
    "wide192_e100": ("CLUE 192-wide + bag x16, LR probe, 100 epochs", "clue_probe", 200, W192E),
    "zero_adamw": ("CLUE-Zero, AdamW, weight decay 0.1", "clue_zero", 200, ADAMW),
    "zero_lr3e4": ("CLUE-Zero, lr 3e-4", "clue_zero", 200, {"finetune.train.lr": 3e-4}),
    "zero_patience5": ("CLUE-Zero, patience 5", "clue_zero", 200, {"finetune.train.patience": 5}),
    "zero_balanced": ("CLUE-Zero, class-weighted loss", "clue_zero", 200, BALANCED),
}
FLOOR = "linear, last 200"
# a one-change row > the row it changes
CHANGES = """clue>clue_zero clue_lr_probe>clue_probe clue_mean>clue clue_lr_probe_mean>clue_lr_probe
    clue_bag_lr_probe>clue_lr_probe clue_bag4_lr_probe>clue_bag_lr_probe clue_zero_mean>clue_zero
    clue_bag16_lr_probe>clue_bag4_lr_probe clue_bag16_lp_ft>clue_bag16_lr_probe wide_e100_both>wide_e100
    wide_bag16_lr_probe>clue_bag16_lr_probe wide_bag16_lp_ft>clue_bag16_lp_ft
    tfidf_bag16_lr_probe>clue_bag16_lr_probe wide_tfidf_lr_probe>wide_bag16_lr_probe
    wide_lr_c>wide_bag16_lr_probe wide_both>wide_bag16_lr_probe zero_adamw>clue_zero
    zero_lr3e4>clue_zero zero_patience5>clue_zero zero_balanced>clue_zero wide192_both>wide_both
    wide192_lr_probe>wide_bag16_lr_probe wide_e100>wide_bag16_lr_probe wide192_e100>wide192_lr_probe"""
PARENTS = dict(change.split(">") for change in CHANGES.split())
STORE = CellStore(
    RESULTS / "profiling_folds" / "cells", settings_resolver(REPO, {DATASET: DATASET})
)


def cells(keys: list[str] | None = None) -> dict[str, list[Cell]]:
    """Row name -> its five fold cells (the rows of ``keys``, every row by default)."""
    chosen = [VARIANTS[k] for k in keys] if keys else list(VARIANTS.values())
    return {variant[0]: [fold_cell(variant, f) for f in range(FOLDS)] for variant in chosen}


def fold_cell(variant: tuple, fold: int) -> Cell:
    overrides = {"encoder.max_len": variant[2], "sequences.profiling.folds": FOLDS}
    overrides |= {"sequences.profiling.fold": fold, **(variant[3] if len(variant) > 3 else {})}
    return Cell.create(DATASET, "profiling", variant[1], SEED, overrides=overrides)


def fold_accuracies(row_cells: list[Cell], key: str = "accuracy") -> dict[str, list]:
    """Attribute -> ``key`` (accuracy, majority_rate) per fold (None: the cell is missing)."""
    metrics = [(STORE.load(c) or {"record": {}})["record"].get("metrics", {}) for c in row_cells]
    return {
        a: [None if (v := m.get(a, {}).get(key)) is None else float(v) for m in metrics]
        for a in ATTRIBUTES
    }


def compare(folds: dict[str, dict[str, list]], pairs: list[tuple[str, str]]) -> list[dict]:
    """Each (row, against) per attribute: paired t over the folds both have, Holm across all."""
    by_fold = lambda values: {f: v for f, v in enumerate(values) if v is not None}  # noqa: E731
    tests = [
        ({"row": r, "attribute": a, "against": b}, by_fold(folds[r][a]), by_fold(folds[b][a]))
        for r, b in pairs
        for a in ATTRIBUTES
    ]
    return [c for c in paired_by_seed(tests) if c["n"] >= 2]


def summarise(grid: dict[str, list[Cell]]) -> dict:
    folds = {"majority class": fold_accuracies(grid[FLOOR], "majority_rate")}
    folds |= {row: fold_accuracies(row_cells) for row, row_cells in grid.items()}
    done = lambda values: [v for v in values if v is not None]  # noqa: E731
    rows = [
        {"row": row, "attribute": attribute, "folds_done": len(done(values)), "folds": values}
        | {"mean": statistics.mean(done(values)) if done(values) else None}
        for row, by_attribute in folds.items()
        for attribute, values in by_attribute.items()
    ]
    against_floor = [(row, FLOOR) for row in folds if row not in (FLOOR, "majority class")]
    comparisons = compare(folds, against_floor)
    changes = compare(folds, [(VARIANTS[k][0], VARIANTS[p][0]) for k, p in PARENTS.items()])
    missing = [c.label() for cs in grid.values() for c in cs if not STORE.has(c)]
    payload = {
        "protocol": {"dataset": DATASET, "folds": FOLDS, "seed": SEED}
        | {"test": "paired t over folds (same users per fold), two-sided"}
        | {"correction": "Holm-Bonferroni within each family: against the floor; each change"},
        "rows": rows,
        "comparisons": comparisons,
        "changes": changes,
        "missing": missing,
    }
    write_results("profiling_folds", payload, markdown(rows, comparisons, changes, missing))
    return payload


def markdown(rows: list[dict], comparisons: list[dict], changes: list[dict], missing: list[str]):
    pct = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"MovieLens-1M (users 1..2999, the `ml-1m` environment), {FOLDS} folds over users, seed "
        f"{SEED}: every user tested once. Accuracy per attribute, mean over folds (folds "
        "done). Comparisons: paired t over the folds both rows have (`n`), two-sided, in two "
        f"families, each Holm-corrected within itself: every row against the floor ({FLOOR}), "
        "and each one-change row against the row it changes. A difference that does not "
        "survive the correction is `not shown`.",
        "",
        "| row | " + " | ".join(ATTRIBUTES) + " |",
        "| --- |" + " --- |" * len(ATTRIBUTES),
    ]
    by_row = {r["row"]: {x["attribute"]: x for x in rows if x["row"] == r["row"]} for r in rows}
    for row, cols in by_row.items():
        cells_text = [f"{pct(cols[a]['mean'])} ({cols[a]['folds_done']})" for a in ATTRIBUTES]
        lines.append(f"| {row} | " + " | ".join(cells_text) + " |")
    lines += comparison_table("Against the floor", comparisons)
    lines += comparison_table("One change against the row it changes", changes)
    lines += ["", f"## Missing cells ({len(missing)})", ""]
    lines += [f"- {label}" for label in missing] or ["- none"]
    return "\n".join(lines)


def comparison_table(title: str, family: list[dict]) -> list[str]:
    head = "| row | against | attribute | folds | diff | 95 % interval | p | p_holm | verdict |"
    lines = [f"\n## {title} (Holm across these {len(family)})\n", head, "| --- " * 9 + "|"]
    for c in family:
        interval = "-" if c["low"] is None else f"[{c['low']:+.3f}, {c['high']:+.3f}]"
        p, p_holm = ("-" if v is None else f"{v:.3f}" for v in (c["p"], c["p_holm"]))
        lines.append(
            f"| {c['row']} | {c['against']} | {c['attribute']} | {c['n']} | {c['diff']:+.3f} "
            f"| {interval} | {p} | {p_holm} | {c['verdict_holm']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-cells", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--rows", nargs="+", choices=sorted(VARIANTS), help="rows to compute")
    args = parser.parse_args()
    if not args.summary_only:
        show_cell_progress()
        run_missing(
            [cell for row_cells in cells(args.rows).values() for cell in row_cells],
            STORE,
            RunnerConfig(project_dir=REPO, envs={DATASET: DATASET}, threads=args.threads),
            args.max_cells,
            on_saved=lambda *_: summarise(cells()),
        )
    print(json.dumps({"missing": len(summarise(cells())["missing"])}))


if __name__ == "__main__":
    main()
