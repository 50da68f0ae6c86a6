"""Speed of next-item recipes side by side: a fine-tuning epoch and a full evaluation on Beauty.

    .venv/bin/python -m benchmarks.recipe_speed [--recipes today recbole_block_last_item]
        [--threads 2] [--steps 60] [--repeats 3]

Each recipe of ``benchmarks/recipe_ladder.py`` trains ``--steps`` batches of its own rows
(prefix rows: one per interaction; user rows: one per user) through the project's loop step
(forward, chunked softmax over all items, backward, Adam), in the batch order an epoch uses,
and the time is scaled to the whole epoch. The recipes take turns, ``--repeats`` times each,
so a noisy machine slows them alike; medians are reported, and their ratio to the first
recipe. The evaluation scores every Beauty user (encoder pass in eval mode, then the full
ranking of all items, history kept) with each recipe's read-out.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from benchmarks.common import load_next_item, write_results
from benchmarks.rungs import RUNGS, recipe
from clue_pipeline.config import encoder_config
from clue_pipeline.models.encoders import build_encoder
from clue_pipeline.models.heads import NextItemModel
from clue_pipeline.tasks.finetuning import NextItemRows, evaluate_next_item
from clue_pipeline.tasks.task_data import next_item_data
from clue_pipeline.training.loop import (
    TrainConfig,
    bf16_autocast,
    bucketed_order,
    build_optimizer,
    epoch_permutation,
)


def build_model(settings: dict, num_items: int) -> NextItemModel:
    """A fresh next-item model of a ladder recipe (seeded, so every turn times the same one)."""
    torch.manual_seed(0)
    encoder = build_encoder(encoder_config(settings["encoder"], num_items))
    return NextItemModel(encoder, **settings["head"])


@dataclass
class EpochSetup:
    """A recipe's model, the loop's settings and optimiser for it, its rows and an epoch's
    batch order."""

    model: NextItemModel
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    rows: NextItemRows
    batches: list[torch.Tensor]  # row indices of each batch, in the epoch's order

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[self.batches[step]] for t in self.rows.dataset)

    def loss(self, step: int, generator: torch.Generator) -> torch.Tensor:
        """Step ``step``'s loss, under bf16 autocast where the loop's rule turns it on."""
        autocast_on = bf16_autocast(self.config, torch.device("cpu"))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_on):
            loss, _ = self.rows.step(self.model, self.batch(step), generator)
        return loss


def epoch_setup(name: str, task, num_items: int) -> EpochSetup:
    """What an epoch of recipe ``name`` trains, built as the loop builds it (same optimiser)."""
    settings = recipe(name)
    model = build_model(settings, num_items).train()
    train = settings["train"]
    batch_size = train["batch_size"]
    config = TrainConfig(
        epochs=1,
        batch_size=batch_size,
        lr=train["lr"],
        bf16=train.get("bf16", False),
        bf16_cpu=train.get("bf16_cpu", False),
    )
    optimizer = build_optimizer(model.parameters(), config)
    rows = task.training_rows(settings["rows"])
    lengths = rows.lengths if rows.lengths is not None else (rows.dataset[0] != 0).sum(1)
    order = bucketed_order(epoch_permutation(rows.count, 0), lengths, batch_size, 50, 0)
    return EpochSetup(model, config, optimizer, rows, list(order.split(batch_size)))


def time_epoch(name: str, task, num_items: int, steps: int) -> tuple[float, int]:
    """Seconds of ``steps`` training steps scaled to one epoch, and the epoch's step count."""
    setup = epoch_setup(name, task, num_items)
    model, optimizer, total_steps = setup.model, setup.optimizer, len(setup.batches)
    generator = torch.Generator().manual_seed(0)
    begin = time.perf_counter()
    for step in range(steps):
        loss = setup.loss(step, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return (time.perf_counter() - begin) * total_steps / steps, total_steps


def time_evaluation(name: str, task, num_items: int) -> float:
    model = build_model(recipe(name), num_items)
    begin = time.perf_counter()
    evaluate_next_item(model, task.test)
    return time.perf_counter() - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", nargs="+", default=["today", "recbole_block_last_item"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="recipe_speed", help="results file name")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.recipes) - set(RUNGS))
    if unknown:
        parser.error(f"unknown recipes {unknown}; known: {list(RUNGS)}")
    torch.set_num_threads(args.threads)
    data = load_next_item("beauty", 50, min_seq_len=5)
    task = next_item_data(data.split, 50, data.num_items)
    epochs: dict[str, list[float]] = {name: [] for name in args.recipes}
    evals: dict[str, list[float]] = {name: [] for name in args.recipes}
    steps_per_epoch = {}
    for _ in range(args.repeats):
        for name in args.recipes:
            seconds, steps_per_epoch[name] = time_epoch(name, task, data.num_items, args.steps)
            epochs[name].append(seconds)
            evals[name].append(time_evaluation(name, task, data.num_items))
            print(f"{name}: epoch {seconds:.1f} s, evaluation {evals[name][-1]:.2f} s", flush=True)
    first = args.recipes[0]
    lines = [
        f"Amazon Beauty ({len(data.split)} users, {data.num_items} items), {args.threads} "
        f"threads; each epoch time is {args.steps} training steps scaled to the epoch's step "
        f"count; recipes take turns, {args.repeats} times each; medians, ratio to `{first}`. "
        "Evaluation: every user's test ranking over all items (encoder pass + ranking).",
        "",
        "| recipe | rows | steps / epoch | epoch s | ratio | evaluation s | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary = {}
    for name in args.recipes:
        epoch_s, eval_s = statistics.median(epochs[name]), statistics.median(evals[name])
        summary[name] = {
            "epoch_s": epoch_s,
            "evaluation_s": eval_s,
            "steps_per_epoch": steps_per_epoch[name],
            "epoch_samples": epochs[name],
            "evaluation_samples": evals[name],
        }
        lines.append(
            f"| {name} | {recipe(name)['rows']} | {steps_per_epoch[name]} | {epoch_s:.1f} | "
            f"{epoch_s / statistics.median(epochs[first]):.2f} | {eval_s:.2f} | "
            f"{eval_s / statistics.median(evals[first]):.2f} |"
        )
    write_results(args.name, {"settings": vars(args), "recipes": summary}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
