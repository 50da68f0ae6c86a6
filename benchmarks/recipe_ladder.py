"""The next-item recipe, one change at a time, each rung trained to its plateau.

    .venv/bin/python -m benchmarks.recipe_ladder [--rungs today last_item ...] [--seeds 0]
        [--threads 1] [--dataset beauty]
    .venv/bin/python -m benchmarks.recipe_ladder --summary-only
    .venv/bin/python -m benchmarks.recipe_ladder --patience 10 --rungs ... (own cells and summary)

A rung is a recipe: its parent's settings plus one change (a few rungs change a named group,
such as RecBole's transformer block, and say so). Each trains CLUE-Zero (fresh weights) through
the project's own encoder, heads, rows and loop until validation NDCG@10 has not improved for
``--patience`` epochs, then scores the best epoch's weights on validation and test under both
protocols: the whole catalogue ranked (``history kept``) and the user's own history removed
from the ranking (``history excluded``, the published protocol on these files).

Cells are resumable: a finished rung is saved to benchmarks/results/recipe_ladder/cells/ and
never recomputed while its settings are unchanged; a rung killed mid-way resumes from its
last checkpoint (benchmarks/.cache/recipe_ladder/, fingerprinted with the code version, so a
code change retrains). The summary, benchmarks/results/recipe_ladder.{json,md}, is rewritten
after every cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO, RESULTS, next_item_dataset, write_results
from clue_pipeline.config import encoder_config, train_config
from clue_pipeline.experiments.recipes import load_ladder
from clue_pipeline.experiments.statistics import ALPHA, corrected, paired
from clue_pipeline.models.encoders import build_encoder
from clue_pipeline.tasks.finetuning import NextItemHead, evaluate_next_item, finetune_next_item
from clue_pipeline.tasks.fingerprint import code_version, fingerprint, job_checkpoint_dir

CELLS = RESULTS / "recipe_ladder" / "cells"
CACHE = REPO / "benchmarks" / ".cache" / "recipe_ladder"
LADDER = load_ladder()  # conf/recipes/ladder.yml
PATIENCE, MAX_EPOCHS = LADDER.patience, LADDER.max_epochs


def run_rung(name: str, seed: int, task, num_items: int, args) -> dict[str, Any]:
    settings = LADDER.recipe(name)
    encoder = encoder_config(settings["encoder"], num_items, where=f"rung {name} encoder")
    head = NextItemHead(**settings["head"])
    config = train_config(
        {
            "epochs": args.max_epochs,
            **settings["train"],
            "seed": seed,
            "patience": args.patience,
            "monitor": "ndcg@10",
            "bucket_by_length": True,
            "drop_last": False,
            "checkpoint_every_steps": 200,
            "resume": True,
        },
        f"rung {name}",
    )
    config = dataclasses.replace(  # TrainConfig is frozen
        config,
        checkpoint_dir=job_checkpoint_dir(
            str(CACHE),
            f"{store_key(args.dataset, args.patience)}/{name}/seed{seed}",
            settings,
            config,
        ),
    )
    rows = task.training_rows(settings["rows"])

    def report(metrics: dict[str, float], _model) -> None:
        print(f"  {name} seed {seed}: valid NDCG@10 {metrics['ndcg@10']:.4f}", flush=True)

    torch.manual_seed(seed)
    start = time.perf_counter()
    model, result = finetune_next_item(
        rows,
        task.valid,
        build_encoder(encoder),
        config,
        on_validation=report,
        head=head,
        select_other_protocol=True,
    )
    wall = time.perf_counter() - start
    scores = {}
    eval_s = []
    for protocol, exclude in (("kept", False), ("excluded", True)):
        if exclude:  # each protocol scored with the weights selected under it
            model.load_state_dict(result.also_best_state)
        for split_name, data in (("valid", task.valid), ("test", task.test)):
            began = time.perf_counter()
            metrics = evaluate_next_item(model, data, exclude_history=exclude)
            eval_s.append(time.perf_counter() - began)
            scores[f"{split_name}/{protocol}"] = {
                k: float(metrics[k]) for k in ("recall@10", "ndcg@10", "mrr@10")
            }
    epochs = [e for e in result.history if "wall_s" in e]
    return {
        "rung": name,
        "seed": seed,
        "settings": settings,
        "settings_hash": fingerprint(settings),
        "code_version": code_version(),
        "rows": rows.count,
        "best_epoch": result.best_epoch,
        "best_epoch_excluded": result.also_best_epoch,
        "epochs_run": len(result.history),
        "median_epoch_s": statistics.median(e["wall_s"] for e in epochs),
        "eval_s": statistics.median(eval_s),
        "wall_s": wall,
        "threads": torch.get_num_threads(),
        "scores": scores,
        "curve": [round(float(e.get("ndcg@10", float("nan"))), 5) for e in result.history],
        "config": asdict(config) | {"checkpoint_dir": None},
    }


def store_key(dataset: str, patience: int) -> str:
    """Where a dataset's cells live: the ladder's patience keeps its folder; another patience
    (``--patience 10``, conf/beauty's, to compare rungs nearer their plateau) gets its own
    folder and summary, so its cells never mix with the default's."""
    return dataset if patience == PATIENCE else f"{dataset}-patience{patience}"


def cell_path(key: str, name: str, seed: int) -> Path:
    return CELLS / key / f"{name}-seed{seed}.json"


def is_current(cell: dict[str, Any]) -> bool:
    """Whether a saved cell was trained with its rung's present settings."""
    return cell["settings_hash"] == fingerprint(LADDER.recipe(cell["rung"]))


def load_cells(key: str) -> list[dict[str, Any]]:
    folder = CELLS / key
    return (
        [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        if folder.exists()
        else []
    )


def summarise(dataset: str, patience: int = PATIENCE) -> None:
    key = store_key(dataset, patience)
    cells = load_cells(key)
    by_rung: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        if is_current(cell):
            by_rung.setdefault(cell["rung"], []).append(cell)
    lines = [
        f"Next-item from fresh weights (CLUE-Zero; Caser for the `caser` rungs) on `{dataset}`, "
        "one change per rung (parent in brackets), each "
        f"trained until valid NDCG@10 (kept) has not improved for {patience} epochs; each "
        "protocol is scored at its own best validation epoch (`best epoch` kept, excl. in "
        "brackets; a cell without the bracket predates this and scores both at the kept one)"
        ". Full ranking over all "
        "items; **kept** = history items stay in the ranking (the pipeline's default "
        "protocol), **excl.** = the user's history removed from the ranking (the published "
        "protocol on these files). Mean over seeds; epoch and evaluation seconds are medians "
        "on the machine below, with other jobs sharing it, so compare them within this table.",
        "",
        "| rung (parent) | change | seeds | best epoch | test HR@10 kept | test NDCG@10 kept | "
        "test MRR@10 kept | test HR@10 excl. | test NDCG@10 excl. | test MRR@10 excl. | "
        "valid NDCG@10 kept / excl. | epoch s | eval s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rung in LADDER.rungs.items():
        parent, what = rung.parent, rung.what
        runs = by_rung.get(name)
        if not runs:
            lines.append(f"| {name} ({parent or '-'}) | {what} | 0 | not run yet |" + " |" * 9)
            continue

        def mean(path: str, key: str, runs=runs) -> float:
            return float(np.mean([r["scores"][path][key] for r in runs]))

        lines.append(
            f"| {name} ({parent or '-'}) | {what} | {len(runs)} | "
            f"{'/'.join(best_epochs(r) for r in runs)} | "
            + " | ".join(
                f"{mean(f'test/{p}', k):.4f}"
                for p in ("kept", "excluded")
                for k in ("recall@10", "ndcg@10", "mrr@10")
            )
            + f" | {mean('valid/kept', 'ndcg@10'):.4f} / {mean('valid/excluded', 'ndcg@10'):.4f}"
            + f" | {np.median([r['median_epoch_s'] for r in runs]):.1f}"
            + f" | {np.median([r['eval_s'] for r in runs]):.2f} |"
        )
    lines += seed_comparisons(by_rung)
    write_results(
        "recipe_ladder" if key == "beauty" else f"recipe_ladder_{key}",
        {
            "dataset": dataset,
            "patience": patience,
            "rungs": {k: [v.change, v.what] for k, v in LADDER.rungs.items()},
            "cells": cells,
        },
        "\n".join(lines),
    )


def best_epochs(cell: dict[str, Any]) -> str:
    other = cell.get("best_epoch_excluded")
    return str(cell["best_epoch"]) + ("" if other is None else f" ({other})")


COMPARED = (
    ("valid/kept", "ndcg@10"),
    ("valid/excluded", "ndcg@10"),
    ("test/kept", "ndcg@10"),
    ("test/excluded", "recall@10"),
    ("test/excluded", "ndcg@10"),
)


def seed_comparisons(by_rung: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each rung with two or more seeds in common with its parent: paired t over those seeds,
    Holm-corrected across the table (valid NDCG@10 chooses; test shows what that buys)."""
    pairs, tests = [], []
    for name, rung in LADDER.rungs.items():
        runs = {r["seed"]: r for r in by_rung.get(name, [])}
        base = {r["seed"]: r for r in by_rung.get(rung.parent or "", [])}
        seeds = sorted(runs.keys() & base.keys())
        if len(seeds) < 2:
            continue
        pairs.append((name, rung.parent, seeds))
        for split, metric in COMPARED:
            score = lambda cell, k=split, m=metric: cell["scores"][k][m]  # noqa: E731
            tests.append(paired([score(runs[s]) for s in seeds], [score(base[s]) for s in seeds]))
    results, rows = iter(corrected(tests)), []
    for name, parent, seeds in pairs:
        cells = [
            f"{c['diff']:+.4f} (p {c['p']:.2f}, p_holm {c['p_holm']:.2f}, {c['verdict_holm']})"
            if c["p"] is not None
            else f"{c['verdict_holm']}"
            for c in (next(results) for _ in COMPARED)
        ]
        rows.append(f"| {name} | {parent} | {len(seeds)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    header = " | ".join(f"{split.replace('/', ' ')} {metric}" for split, metric in COMPARED)
    return [
        "",
        "## Rungs against their parents (paired t over the seeds both ran, two-sided; p_holm "
        f"Holm-corrected across the {len(tests)} comparisons of this table, level {ALPHA})",
        "",
        f"| rung | parent | paired seeds | {header} |",
        "| --- | --- | --- | " + " | ".join("---" for _ in COMPARED) + " |",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--rungs", nargs="*", default=list(LADDER.rungs))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--patience", type=int, default=PATIENCE)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rungs) - set(LADDER.rungs))
    if unknown:
        parser.error(f"unknown rungs {unknown}; known: {list(LADDER.rungs)}")
    torch.set_num_threads(args.threads)
    if not args.summary_only:
        data = next_item_dataset(args.dataset)
        task = data.task(LADDER.base["encoder"]["max_len"])
        for name in args.rungs:
            for seed in args.seeds:
                path = cell_path(store_key(args.dataset, args.patience), name, seed)
                if path.exists() and is_current(json.loads(path.read_text())):
                    continue
                print(f"rung {name} seed {seed}: training", flush=True)
                cell = run_rung(name, seed, task, data.num_items, args)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(cell, indent=1, default=str))
                tmp.replace(path)
                print(f"rung {name} seed {seed}: {cell['scores']['test/kept']}", flush=True)
                summarise(args.dataset, args.patience)
    summarise(args.dataset, args.patience)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
