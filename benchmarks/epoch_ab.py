"""The Beauty fine-tuning epoch and full evaluation of this checkout beside an earlier commit's.

    .venv/bin/python -m benchmarks.epoch_ab [--base HEAD~1] [--recipe recbole_block_last_item]
        [--threads 2] [--steps 60] [--rounds 3]

The base commit is checked out once under benchmarks/.cache/epoch_ab/<sha>. Each round times
both trees, one after the other, each in a fresh process running the same measurement
(``benchmarks.recipe_speed``'s: ``--steps`` training steps of prefix rows scaled to the epoch,
then every user's test ranking), so a noisy machine slows both alike; medians and the ratio
base / this are reported (above 1: this checkout is faster). RecBole's SASRec epoch on the same
split, measured apart, is quoted for scale (``benchmarks.pretrain_speed.RECBOLE_EPOCH_S``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.common import REPO, SHARED, write_results
from benchmarks.pretrain_speed import RECBOLE_EPOCH_S

CACHE = REPO / "benchmarks" / ".cache" / "epoch_ab"
CHILD = """
import json, sys, torch
from benchmarks.common import load_next_item
from benchmarks.recipe_speed import time_epoch, time_evaluation
from clue_pipeline.tasks.task_data import next_item_data
recipe, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
data = load_next_item("beauty", 50, min_seq_len=5)
task = next_item_data(data.split, 50, data.num_items)
epoch_s, _ = time_epoch(recipe, task, data.num_items, steps)
print(json.dumps({"epoch_s": epoch_s, "evaluation_s": time_evaluation(recipe, task, data.num_items)}))
"""


def checkout(commit: str) -> tuple[Path, str]:
    sha = subprocess.run(
        ["git", "rev-parse", commit], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = CACHE / sha[:12]
    if not tree.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO, check=True)
    return tree, sha


def measure(tree: Path, recipe: str, steps: int, threads: int) -> dict[str, float]:
    env = {
        "PYTHONPATH": f"{tree}:{tree / 'src'}",
        "PATH": "/usr/bin:/bin",
        "CLUE_SHARED_DATA": str(SHARED),  # the base tree sits elsewhere; the data do not
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, recipe, str(steps), str(threads)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"measurement in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="HEAD~1")
    parser.add_argument("--recipe", default="recbole_block_last_item")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # the results header reports this process's threads
    base_tree, sha = checkout(args.base)
    samples: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    for _ in range(args.rounds):
        for name, tree in (("base", base_tree), ("this", REPO)):
            samples[name].append(measure(tree, args.recipe, args.steps, args.threads))
            print(name, samples[name][-1], flush=True)
    medians = {
        name: {k: statistics.median(s[k] for s in rows) for k in ("epoch_s", "evaluation_s")}
        for name, rows in samples.items()
    }
    lines = [
        f"Amazon Beauty, recipe `{args.recipe}` (prefix rows), {args.threads} threads. Epoch: "
        f"{args.steps} training steps scaled to the epoch; evaluation: every user's test ranking "
        f"over all items (encoder pass + ranking). Base = commit `{sha[:12]}` ({args.base}); "
        f"{args.rounds} rounds taking turns, medians; speed-up = base / this.",
        "",
        "| code | epoch s | evaluation s |",
        "| --- | --- | --- |",
    ]
    for name in ("base", "this"):
        lines.append(
            f"| {name} | {medians[name]['epoch_s']:.1f} | {medians[name]['evaluation_s']:.2f} |"
        )
    speedup = {k: medians["base"][k] / medians["this"][k] for k in ("epoch_s", "evaluation_s")}
    lines += [
        f"| speed-up | {speedup['epoch_s']:.2f}x | {speedup['evaluation_s']:.2f}x |",
        "",
        f"For scale: RecBole 1.2.1 SASRec's epoch on this split took {RECBOLE_EPOCH_S} s, "
        "measured apart at 2 threads on an idle machine (benchmarks/results/pretrain_speed.md);"
        " compare it only with a run of this script at 2 threads on an idle machine.",
    ]
    write_results(
        "epoch_ab",
        {
            "settings": vars(args),
            "base_commit": sha,
            "samples": samples,
            "medians": medians,
            "speedup": speedup,
        },
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
