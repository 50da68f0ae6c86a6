"""Next-item fine-tuning from one row per user against one row per prefix, same encoder and loop.

    .venv/bin/python -m benchmarks.prefix_rows [--dataset beauty] [--epochs 10] [--threads 2]

Why: side by side with RecBole (benchmarks/results/peers_beauty.md), its SASRec ends higher
on Beauty than ours. Ours trains one row per user, every position supervised, and reads the
score from the ``[UR]`` state, which is then supervised once per user and epoch. RecBole trains
one row per (prefix, next item). This runs both row layouts through the project's encoder,
loss and loop (CLUE-Zero: fresh weights), with the same seed and settings, and writes the
validation and test curves to benchmarks/results/prefix_rows_<dataset>.{json,md}.

Prefix rows: for every training prefix ``s[:k]`` (k >= 1) the input is its last ``max_len``
items then ``[UR]``, and the only target is ``s[k]`` at ``[UR]``: one row per interaction. Both
layouts are the pipeline's (``finetune.next_item_rows``, ``NextItemData.training_rows``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import load_next_item, write_results
from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.heads import NextItemModel
from clue_pipeline.tasks.finetuning import evaluate_next_item
from clue_pipeline.tasks.task_data import next_item_data
from clue_pipeline.training.loop import TrainConfig, fit

MAX_LEN = 50


def run(layout: str, task, num_items: int, args) -> dict:
    rows = task.training_rows(layout)
    encoder = build_encoder(
        EncoderConfig(
            num_items=num_items, max_len=MAX_LEN, hidden=64, blocks=2, heads=4, dropout=0.5
        )
    )
    torch.manual_seed(args.seed)
    model = NextItemModel(encoder)
    curve: list[dict] = []
    clock = {"start": time.perf_counter()}

    def validate(m) -> dict[str, float]:
        train_s = time.perf_counter() - clock["start"]
        valid, test = evaluate_next_item(m, task.valid), evaluate_next_item(m, task.test)
        m.train()
        row = {
            "epoch": len(curve),
            "train_s": train_s,
            "valid_ndcg@10": float(valid["ndcg@10"]),
            "test_ndcg@10": float(test["ndcg@10"]),
            "test_recall@10": float(test["recall@10"]),
        }
        curve.append(row)
        print(layout, row, flush=True)
        clock["start"] = time.perf_counter()
        return {"ndcg@10": row["valid_ndcg@10"]}

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=256,
        lr=1e-3,
        seed=args.seed,
        device="auto",
        bucket_by_length=True,
        drop_last=False,
        patience=args.epochs,
        monitor="ndcg@10",
        progress=False,
    )
    fit(model, rows.dataset, rows.step, config, validate, lengths=rows.lengths)
    return {"rows": rows.count, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_next_item(args.dataset, MAX_LEN, min_seq_len=5)
    task = next_item_data(data.split, MAX_LEN, data.num_items)
    runs = {layout: run(layout, task, data.num_items, args) for layout in ("user", "prefix")}
    lines = [
        f"CLUE-Zero next-item on `{args.dataset}` ({len(data.split)} users, {data.num_items} "
        f"items), seed {args.seed}, {args.epochs} epochs each, batch 256, len {MAX_LEN}, d=64, "
        "dropout 0.5; full ranking, history not excluded. `user`: one row per user, every "
        "position supervised; `prefix`: one row per (prefix, next item), supervised at [UR] "
        "(RecBole's layout). Both are `finetune.next_item_rows` settings.",
        "",
        "| layout | rows | median epoch (s) | best valid NDCG@10 (epoch) | test NDCG@10 / HR@10 "
        "there |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layout, result in runs.items():
        curve = result["curve"]
        best = max(curve, key=lambda r: r["valid_ndcg@10"])
        lines.append(
            f"| {layout} | {result['rows']} | "
            f"{np.median([r['train_s'] for r in curve]):.1f} | {best['valid_ndcg@10']:.4f} "
            f"({best['epoch']}) | {best['test_ndcg@10']:.4f} / {best['test_recall@10']:.4f} |"
        )
    lines += ["", "| epoch | " + " | ".join(f"{k} valid NDCG@10" for k in runs) + " |"]
    lines.append("| --- |" + " --- |" * len(runs))
    for epoch in range(args.epochs):
        cells = [f"{r['curve'][epoch]['valid_ndcg@10']:.4f}" for r in runs.values()]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    write_results(
        f"prefix_rows_{args.dataset}", {"settings": vars(args), "runs": runs}, "\n".join(lines)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
