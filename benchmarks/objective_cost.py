"""What each pre-training objective costs: one CLUE pre-training epoch per objective, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.objective_cost [--dataset ml-latest-small]
        [--repeats 3] [--threads 1]

The objectives run in turn, ``--repeats`` rounds, so that a busy machine slows them alike; the
table gives each one's median epoch and its ratio to SimSiam's in the same run. The encoder and
views are the defaults of conf/base (d 64, 2 blocks, 4 heads, len 50, dropout views), batch 256.
Writes benchmarks/results/objective_cost_<dataset>.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import load_next_item, write_results
from clue_pipeline.augment import validate_view_policy
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.pretraining import PretrainJob, run_job
from clue_pipeline.training.loop import TrainConfig

# name -> (objective, what it is); SimSiam first: every ratio is to it
OBJECTIVES = {
    "simsiam": (ObjectiveConfig(), "SimSiam over the two views (the paper)"),
    "simsiam_next": (ObjectiveConfig(next_item_weight=1.0), "SimSiam + 1.0 x next items"),
    "simsiam_next_share02": (
        ObjectiveConfig(next_item_weight=1.0, next_item_share=0.2),
        "SimSiam + 1.0 x next items at 20 % of the positions per step",
    ),
    "simsiam_masked": (ObjectiveConfig(masked_item_weight=1.0), "SimSiam + 1.0 x masked items"),
    "next_only": (
        ObjectiveConfig(next_item_weight=1.0, view_weight=0.0),
        "next items alone (view_weight 0; the views are still encoded)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_next_item(args.dataset, max_len=50)
    encoder = EncoderConfig(num_items=data.num_items, max_len=50, hidden=64, blocks=2, heads=4)
    tokens = model_inputs(data.split["train"], 50, encoder.tokens.user)
    train = TrainConfig(epochs=1, batch_size=256, seed=0, device="cpu")
    views = validate_view_policy({"strategies": ["dropout"]})
    seconds: dict[str, list[float]] = {name: [] for name in OBJECTIVES}
    for round_ in range(args.repeats):
        for name, (objective, _) in OBJECTIVES.items():
            start = time.perf_counter()
            run_job(
                PretrainJob("clue", tokens, encoder, train, view_policy=views, objective=objective)
            )
            seconds[name].append(time.perf_counter() - start)
            print(f"round {round_}: {name} {seconds[name][-1]:.2f} s", flush=True)

    base = statistics.median(seconds["simsiam"])
    rows = {
        name: {
            "what": what,
            "epoch_seconds": seconds[name],
            "median_epoch_s": statistics.median(seconds[name]),
            "ratio_to_simsiam": statistics.median(seconds[name]) / base,
        }
        for name, (_, what) in OBJECTIVES.items()
    }
    lines = [
        f"One CLUE pre-training epoch on `{args.dataset}` ({len(tokens)} users, "
        f"{data.num_items} items): d 64, 2 blocks, 4 heads, len 50, dropout views, batch 256, "
        f"{args.threads} thread(s); the objectives in turn, {args.repeats} rounds, medians. "
        "An epoch includes the loop's per-epoch health diagnostics.",
        "",
        "| objective | what | median epoch (s) | x SimSiam | all epochs (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['what']} | {row['median_epoch_s']:.2f} | "
            f"{row['ratio_to_simsiam']:.2f} | "
            + ", ".join(f"{s:.2f}" for s in row["epoch_seconds"])
            + " |"
        )
    write_results(
        f"objective_cost_{args.dataset}",
        {"dataset": args.dataset, "users": len(tokens), "items": data.num_items, "results": rows},
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
