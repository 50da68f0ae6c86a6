"""Training speed on Amazon Beauty: CLUE and masked-item pre-training epochs, and a next-item
fine-tuning epoch in both row layouts, as sequences per second, with the run-environment's
encoder and training settings (`conf/beauty`; the command line sets batch, device, threads).

    .venv/bin/python -m benchmarks.pretrain_speed [--repeats 3] [--threads N]

Writes benchmarks/results/pretrain_speed.{json,md}. One epoch = one pass over the training
part of every user's sequence (the `next_item` pre-training corpus).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch

from benchmarks.common import (
    markdown_table,
    next_item_dataset,
    peak_rss_gib,
    recbole_reference,
    run_settings,
    write_results,
)
from clue_pipeline.models.encoders import build_encoder
from clue_pipeline.tasks.finetuning import RankingData, finetune_next_item
from clue_pipeline.tasks.pretraining import MaskedItemSettings, PretrainJob, run_job


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
    jobs, facts = epochs(data, args)
    rows = {}
    for name, fn in jobs.items():
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        rows[name] = {
            "epoch_seconds": seconds,
            "median_epoch_s": median,
            "sequences_per_s": facts["users"] / median,
            "ratio_to_recbole_sasrec_epoch": median / recbole["epoch_s"]
            if recbole["epoch_s"]
            else None,
        }
        print(name, rows[name], flush=True)
    payload = {
        "dataset": args.dataset,
        "users": facts["users"],
        "items": data.num_items,
        "settings": {**facts["settings"], "threads": args.threads},
        "results": rows,
        "peak_rss_gib": peak_rss_gib(),
        "reference": recbole,
    }
    name = f"pretrain_speed_{args.dataset}" if args.dataset != "beauty" else "pretrain_speed"
    write_results(name, payload, markdown(args, data.num_items, facts, rows, recbole))


def epochs(data, args: argparse.Namespace) -> tuple[dict[str, Callable[[], Any]], dict]:
    """One epoch of each timed job, with the run-environment's settings; the batch, device and
    seed are the benchmark's, and pre-training is timed with and without length buckets."""
    settings = run_settings(args.dataset)
    encoder = settings.encoder(data.num_items)
    tokens = data.pretrain_tokens(encoder.max_len)
    changes = {"epochs": 1, "batch_size": args.batch_size, "seed": 0, "device": args.device}
    train = settings.pretrain_train(**changes, bucket_by_length=False)
    bucketed = replace(train, bucket_by_length=True)
    finetune = settings.finetune_train(**changes, patience=None, monitor=None)
    mask_ratio = MaskedItemSettings(settings.pretrain.masked_item.mask_ratio)
    task = data.task(encoder.max_len)
    empty_valid = RankingData(task.valid.tokens[:1], task.valid.targets[:1])

    def pretrain(config, method="clue") -> Callable[[], Any]:
        method_settings = settings.clue() if method == "clue" else mask_ratio
        return lambda: run_job(PretrainJob(method, tokens, encoder, config, method_settings))

    def finetune_epoch(layout: str) -> Callable[[], Any]:
        head = replace(settings.finetune.next_item, rows=layout)
        return lambda: finetune_next_item(
            task.training_rows(layout), empty_valid, build_encoder(encoder), finetune, head=head
        )

    jobs = {
        "clue_pretrain": pretrain(train),
        "clue_pretrain_bucketed": pretrain(bucketed),
        "mip_pretrain": pretrain(train, "mip"),
        "next_item_finetune": finetune_epoch("user"),
        "next_item_finetune_prefix": finetune_epoch("prefix"),
    }
    facts = {
        "users": len(tokens),
        "prefix_rows": task.training_rows("prefix").count,
        "settings": {
            "encoder": asdict(encoder),
            "pretrain": asdict(train),
            "finetune": asdict(finetune),
        },
    }
    return jobs, facts


def markdown(args, items: int, facts: dict, rows: dict, recbole: dict) -> str:
    encoder, users = facts["settings"]["encoder"], facts["users"]
    lines = [
        f"Dataset {args.dataset}: {users} users, {items} items; the run-environment's encoder "
        f"({encoder['kind']}, len {encoder['max_len']}, d={encoder['hidden']}, "
        f"{encoder['blocks']} blocks, {encoder['heads']} heads, {encoder['norm']}-norm, dropout "
        f"{encoder['dropout']}) and training settings; batch {args.batch_size}, "
        f"{args.threads} threads; {args.repeats} repeats (median). An epoch includes the loop's "
        "per-epoch diagnostics. `bucketed` = `bucket_by_length: true` (batches of similar "
        "length cut to their longest row); next-item fine-tuning runs as its conf says "
        "(bucketed in conf/base), with the run-environment's head. "
        f"`next_item_finetune`: one row per user ({users} rows); `_prefix`: one row per "
        f"(prefix, next item) ({facts['prefix_rows']} rows, `conf/beauty`'s "
        "`finetune.next_item.rows`); sequences/s counts users in both.",
        "",
    ]
    lines += markdown_table(
        ("job", "median epoch (s)", "sequences/s", "all epochs (s)"),
        [
            (
                name,
                f"{row['median_epoch_s']:.1f}",
                f"{row['sequences_per_s']:.0f}",
                ", ".join(f"{s:.1f}" for s in row["epoch_seconds"]),
            )
            for name, row in rows.items()
        ],
    )
    if recbole["epoch_s"]:
        lines += [
            "",
            f"Reference: RecBole 1.2.1 SASRec's median training epoch on Beauty, "
            f"{recbole['epoch_s']:.1f} s, as measured in {recbole['source']}; compare "
            "with care where this run's threads or load differ.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
