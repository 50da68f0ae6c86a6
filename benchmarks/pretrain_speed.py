"""Training speed on Amazon Beauty: CLUE and masked-item pre-training epochs, and a next-item
fine-tuning epoch in both row layouts (len 50, d=64, 2 blocks, batch 256), as sequences per
second.

    .venv/bin/python -m benchmarks.pretrain_speed [--repeats 3] [--threads N]

Writes benchmarks/results/pretrain_speed.{json,md}. One epoch = one pass over the training
part of every user's sequence (the `next_item` pre-training corpus).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import torch

from benchmarks.common import next_item_dataset, peak_rss_gib, recbole_reference, write_results
from clue_pipeline.augment import validate_view_policy
from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.tasks.finetuning import RankingData, finetune_next_item
from clue_pipeline.tasks.pretraining import ClueSettings, PretrainJob, run_job
from clue_pipeline.training.loop import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = next_item_dataset(args.dataset)
    # RecBole's epoch as the peers study measured it on Beauty, read from its results file
    recbole = recbole_reference() if args.dataset == "beauty" else {"epoch_s": None}
    encoder = EncoderConfig(num_items=data.num_items, max_len=50, hidden=64, blocks=2, heads=4)
    tokens = data.pretrain_tokens(50)
    train = TrainConfig(epochs=1, batch_size=args.batch_size, seed=0, device=args.device)
    bucketed = replace(train, bucket_by_length=True)
    policy = validate_view_policy({"strategies": ["dropout"]})
    users = len(tokens)

    def clue_epoch() -> None:
        run_job(PretrainJob("clue", tokens, encoder, train, ClueSettings(policy)))

    def clue_bucketed_epoch() -> None:
        run_job(PretrainJob("clue", tokens, encoder, bucketed, ClueSettings(policy)))

    def mip_epoch() -> None:
        run_job(PretrainJob("mip", tokens, encoder, train))

    task = data.task(50)
    empty_valid = RankingData(task.valid.tokens[:1], task.valid.targets[:1])

    def finetune_epoch(layout: str = "user") -> None:
        rows = task.training_rows(layout)
        finetune_next_item(rows, empty_valid, build_encoder(encoder), bucketed)

    def finetune_prefix_epoch() -> None:
        finetune_epoch("prefix")

    rows = {}
    for name, fn in (
        ("clue_pretrain", clue_epoch),
        ("clue_pretrain_bucketed", clue_bucketed_epoch),
        ("mip_pretrain", mip_epoch),
        ("next_item_finetune", finetune_epoch),
        ("next_item_finetune_prefix", finetune_prefix_epoch),
    ):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        rows[name] = {
            "epoch_seconds": seconds,
            "median_epoch_s": median,
            "sequences_per_s": users / median,
            "ratio_to_recbole_sasrec_epoch": median / recbole["epoch_s"]
            if recbole["epoch_s"]
            else None,
        }
        print(name, rows[name], flush=True)

    payload = {
        "dataset": args.dataset,
        "users": users,
        "items": data.num_items,
        "settings": {
            "max_len": 50,
            "hidden": 64,
            "blocks": 2,
            "heads": 4,
            "dropout": 0.5,
            "batch_size": args.batch_size,
            "threads": args.threads,
        },
        "results": rows,
        "peak_rss_gib": peak_rss_gib(),
        "reference": recbole,
    }
    lines = [
        f"Dataset {args.dataset}: {users} users, {data.num_items} items; len 50, d=64, 2 blocks, "
        f"4 heads, dropout 0.5, batch {args.batch_size}, {args.threads} threads; "
        f"{args.repeats} repeats (median). An epoch includes the loop's per-epoch diagnostics. "
        "`bucketed` = `bucket_by_length: true` (batches of similar length cut to their longest "
        "row); next-item fine-tuning runs bucketed, as its default in conf/base. "
        f"`next_item_finetune`: one row per user ({users} rows); `_prefix`: one row per "
        f"(prefix, next item) ({task.training_rows('prefix').count} rows, `conf/beauty`'s "
        "`finetune.next_item_rows`); sequences/s counts users in both.",
        "",
        "| job | median epoch (s) | sequences/s | all epochs (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['median_epoch_s']:.1f} | {row['sequences_per_s']:.0f} | "
            + ", ".join(f"{s:.1f}" for s in row["epoch_seconds"])
            + " |"
        )
    if recbole["epoch_s"]:
        lines += [
            "",
            f"Reference: RecBole 1.2.1 SASRec's median training epoch on Beauty, "
            f"{recbole['epoch_s']:.1f} s, as measured in {recbole['source']}; compare "
            "with care where this run's threads or load differ.",
        ]
    write_results(
        f"pretrain_speed_{args.dataset}" if args.dataset != "beauty" else "pretrain_speed",
        payload,
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()
