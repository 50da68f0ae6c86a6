"""Where a Beauty fine-tuning step spends its time, phase by phase.

    .venv/bin/python -m benchmarks.profile_epoch [--recipe recbole_block_last_item]
        [--threads 2] [--steps 60]

The recipe's steps over prefix rows, in an epoch's batch order, split into: the encoder's
forward pass (dropout's random numbers counted apart), the full softmax over all items (the
chunked cross-entropy computes its loss and both gradients in its forward), the backward pass
through the encoder, and the optimizer (gradient clipping + Adam). Phases are timed with
``perf_counter`` around the project's own functions (wrapped for the run only), so the shares
add up to the step. Writes benchmarks/results/profile_epoch.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager

import torch

from benchmarks.common import load_next_item, write_results
from benchmarks.recipe_speed import epoch_setup
from clue_pipeline.models import encoders, heads
from clue_pipeline.tasks.task_data import next_item_data

PHASES = ("encoder forward", "dropout masks", "item softmax", "backward", "optimizer")


@contextmanager
def timed_calls(module, name: str, seconds: dict[str, float], phase: str):
    """``module.name`` adds its wall time to ``seconds[phase]`` while the block runs."""
    original: Callable = getattr(module, name)

    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[phase] += time.perf_counter() - began

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def profile(name: str, steps: int, warmup: int = 5) -> tuple[list[dict[str, float]], int]:
    data = load_next_item("beauty", 50, min_seq_len=5)
    task = next_item_data(data.split, 50, data.num_items)
    setup = epoch_setup(name, task, data.num_items)
    model, optimizer = setup.model, setup.optimizer
    generator = torch.Generator().manual_seed(0)
    per_step = []
    for step in range(warmup + steps):
        seconds: dict[str, float] = defaultdict(float)
        with (
            timed_calls(heads, "item_cross_entropy", seconds, "item softmax"),
            timed_calls(encoders, "fast_dropout", seconds, "dropout masks"),
        ):
            began = time.perf_counter()
            loss = setup.loss(step, generator)
            forward = time.perf_counter() - began
            began = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            seconds["backward"] = time.perf_counter() - began
            began = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            seconds["optimizer"] = time.perf_counter() - began
        seconds["encoder forward"] = forward - seconds["item softmax"] - seconds["dropout masks"]
        if step >= warmup:
            per_step.append(dict(seconds))
    return per_step, len(setup.batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default="recbole_block_last_item")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--name", default="profile_epoch", help="results file name")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    per_step, steps_per_epoch = profile(args.recipe, args.steps)
    totals = {p: sum(s[p] for s in per_step) for p in PHASES}
    whole = sum(totals.values())
    step_ms = [1e3 * sum(s.values()) for s in per_step]
    lines = [
        f"Amazon Beauty, recipe `{args.recipe}` (prefix rows, batch 256), {args.threads} threads, "
        f"{args.steps} steps after 5 of warm-up, in an epoch's batch order. Median step "
        f"{statistics.median(step_ms):.0f} ms; x {steps_per_epoch} steps = "
        f"{statistics.median(step_ms) * steps_per_epoch / 1e3:.1f} s per epoch.",
        "",
        "| phase | ms per step (mean) | share |",
        "| --- | --- | --- |",
    ]
    for phase in PHASES:
        lines.append(
            f"| {phase} | {1e3 * totals[phase] / len(per_step):.1f} | "
            f"{100 * totals[phase] / whole:.0f} % |"
        )
    write_results(
        args.name,
        {
            "settings": vars(args),
            "steps_per_epoch": steps_per_epoch,
            "mean_ms": {p: 1e3 * totals[p] / len(per_step) for p in PHASES},
            "share": {p: totals[p] / whole for p in PHASES},
            "median_step_ms": statistics.median(step_ms),
        },
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
