"""The next-item recipe, one change at a time, each rung trained to its plateau.

    .venv/bin/python -m benchmarks.recipe_ladder [--rungs today last_item ...] [--seeds 0]
        [--threads 1] [--dataset beauty] [--patience 10] [--select excluded]
    .venv/bin/python -m benchmarks.recipe_ladder --summary-only

A rung is its parent's recipe plus one change (or a named group, such as RecBole's block). Each
trains CLUE-Zero through the project's encoder, heads, rows and loop until validation NDCG@10
under ``--select``'s protocol (history kept, or excluded: the published one on these files)
has not improved for ``--patience`` epochs; each protocol is scored at its own best epoch.
Another patience or selection has its own cells and summary. Finished rungs are saved under
benchmarks/results/recipe_ladder/cells/ and kept while their settings hold; a killed rung
resumes from its checkpoint (benchmarks/.cache/recipe_ladder/, fingerprinted with the code).
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
from clue_pipeline.training.checkpoint import write_atomic

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
            f"{store_key(args.dataset, args.patience, args.select)}/{name}/seed{seed}",
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
        exclude_history=args.select == "excluded",
        select_other_protocol=True,
    )
    wall = time.perf_counter() - start
    scores, eval_s = {}, []
    main = args.select == "excluded"  # each protocol scored with the weights selected under it
    for protocol, exclude in (("kept", False), ("excluded", True)):
        model.load_state_dict(result.best_state if exclude == main else result.also_best_state)
        for split_name, data in (("valid", task.valid), ("test", task.test)):
            began = time.perf_counter()
            metrics = evaluate_next_item(model, data, exclude_history=exclude)
            eval_s.append(time.perf_counter() - began)
            scores[f"{split_name}/{protocol}"] = {
                k: float(metrics[k]) for k in ("recall@10", "ndcg@10", "mrr@10")
            }
    return {
        "rung": name,
        "seed": seed,
        "settings": settings,
        "settings_hash": fingerprint(settings),
        "code_version": code_version(),
        "rows": rows.count,
        "best_epoch": result.also_best_epoch if main else result.best_epoch,
        "best_epoch_excluded": result.best_epoch if main else result.also_best_epoch,
        "selected_under": args.select,
        "epochs_run": len(result.history),
        "median_epoch_s": statistics.median(e["wall_s"] for e in result.history if "wall_s" in e),
        "eval_s": statistics.median(eval_s),
        "wall_s": wall,
        "threads": torch.get_num_threads(),
        "scores": scores,
        "curve": [round(float(e.get("ndcg@10", float("nan"))), 5) for e in result.history],
        "config": asdict(config) | {"checkpoint_dir": None},
    }


def store_key(dataset: str, patience: int, select: str = "kept") -> str:
    """Where a dataset's cells live: the ladder's patience keeps its folder; another patience
    (``--patience 10``, conf/beauty's, to compare rungs nearer their plateau) or early stopping
    on the history-excluded protocol (``--select excluded``) gets its own folder and summary."""
    key = dataset if patience == PATIENCE else f"{dataset}-patience{patience}"
    return key if select == "kept" else f"{key}-select-{select}"


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


def summarise(dataset: str, patience: int = PATIENCE, select: str = "kept") -> None:
    key = store_key(dataset, patience, select)
    cells = load_cells(key)
    by_rung: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        if is_current(cell):
            by_rung.setdefault(cell["rung"], []).append(cell)
    lines = [
        f"Next-item from fresh weights (CLUE-Zero; Caser for the `caser` rungs) on `{dataset}`, "
        "one change per rung (parent in brackets), each "
        f"trained until valid NDCG@10 ({select}) has not improved for {patience} epochs; each "
        "protocol is scored at its own best validation epoch (`best epoch` kept, excl. in "
        "brackets, `cut` where the early stop came within the patience of the other's best; "
        "a cell without the bracket predates this and scores both at the kept one)"
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
    """Kept's best epoch (excluded's); `cut`: the early stop came within the patience of it."""
    kept, excluded, config = cell["best_epoch"], cell.get("best_epoch_excluded"), cell["config"]
    other = kept if cell.get("selected_under") == "excluded" else excluded
    last = cell["epochs_run"] - 1
    cut = other is not None and last + 1 < config["epochs"] and last - other < config["patience"]
    return str(kept) + ("" if excluded is None else f" ({excluded}{', cut' * cut})")


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
    parser.add_argument("--select", choices=("kept", "excluded"), default="kept")
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
                path = cell_path(store_key(args.dataset, args.patience, args.select), name, seed)
                if path.exists() and is_current(json.loads(path.read_text())):
                    continue
                print(f"rung {name} seed {seed}: training", flush=True)
                cell = run_rung(name, seed, task, data.num_items, args)
                text = json.dumps(cell, indent=1, default=str).encode()
                write_atomic(path, lambda handle, text=text: handle.write(text))
                print(f"rung {name} seed {seed}: {cell['scores']['test/kept']}", flush=True)
                summarise(args.dataset, args.patience, args.select)
    summarise(args.dataset, args.patience, args.select)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
