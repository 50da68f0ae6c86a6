"""CLUE pre-training on Amazon data: three ways to batch sequences of very different lengths.

    .venv/bin/python -m benchmarks.pretrain_batching [--dataset beauty] [--threads 2]
        [--repeats 3] [--epochs 20]

- ``padded``: mixed-length batches, both views padded to the batch's longest sequence (the
  plain way; the BatchNorm heads see every length).
- ``bucketed``: batches of one length (``bucket_by_length`` in the loop), cut to it: least
  padding, but each batch's BatchNorm statistics come from one length only. This was
  ``conf/beauty``'s pre-training before CLUE's jobs drew mixed batches.
- ``grouped`` (the default, ``pretrain.simsiam.encode_by_length``): mixed-length batches whose
  two views go through the encoder in one pass, in groups of widths 4, 8, 16, ...; the heads'
  BatchNorm sees the whole mixed batch.

Speed: one epoch of each, taking turns ``--repeats`` times (a noisy machine slows them alike),
medians and ratios. Health: ``bucketed`` and ``grouped`` each trained for ``--epochs`` epochs
(``conf/<dataset>``'s budget), then the per-epoch health of the user vectors (effective rank,
top-2 PC share, alignment, uniformity) of the last epoch. ``padded`` and ``grouped`` compute the
same function (``tests/models/test_clue.py``), so only their speed differs. The encoder, views
and heads are ``conf/base`` + ``conf/<dataset>``'s.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from benchmarks.common import load_next_item, write_results
from benchmarks.objectives import parameters
from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config import encoder_config, train_config
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.pretraining import HealthConfig, PretrainJob, SimSiamConfig
from clue_pipeline.training.distributed import DistributedConfig, WorkerSpec, run_training
from clue_pipeline.training.loop import TrainResult

VARIANTS = {
    "padded": {"bucket_by_length": False, "encode_by_length": False},
    "bucketed": {"bucket_by_length": True, "encode_by_length": False},
    "grouped": {"bucket_by_length": False, "encode_by_length": True},
}
HEALTH = ("effective_rank", "top2_share", "alignment", "uniformity", "projection_std")


def clue_job(params: dict[str, Any], data, variant: str, epochs: int) -> PretrainJob:
    encoder = encoder_config(params["encoder"], num_items=data.num_items)
    settings = VARIANTS[variant]
    train = {**params["pretrain"]["train"], "epochs": epochs}
    train.pop("checkpoint_dir", None)
    train.update(
        progress=False,
        resume=False,
        checkpoint_every_steps=None,
        device="cpu",
        bucket_by_length=settings["bucket_by_length"],
    )
    simsiam = {**params["pretrain"]["simsiam"], "encode_by_length": settings["encode_by_length"]}
    return PretrainJob(
        method="clue",
        tokens=model_inputs(data.split["train"], encoder.max_len, encoder.tokens.user),
        encoder=encoder,
        train=train_config(train, "pretrain.train"),
        view_policy=validate_view_policy(params["augment"]["views"]),
        simsiam=SimSiamConfig(**simsiam),
        health=HealthConfig(users=512, min_effective_rank=None),
    )


def pretrain(job: PretrainJob) -> TrainResult:
    """The job as it is batched here: ``run_job`` would give CLUE mixed batches whatever the
    job's ``bucket_by_length``, and ``bucketed`` is measured for comparison."""
    spec = WorkerSpec(
        builder="clue_pipeline.tasks.pretraining:build_pretraining",
        train=job.train,
        kwargs={"job": job},
    )
    return run_training(spec, DistributedConfig(nproc_per_node=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="beauty", choices=["beauty", "sports"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="health runs; conf's if unset")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = parameters(args.dataset)
    data = load_next_item(args.dataset, params["encoder"]["max_len"])
    epochs = args.epochs or int(params["pretrain"]["train"]["epochs"])

    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name in VARIANTS:
            result = pretrain(clue_job(params, data, name, epochs=1))
            seconds[name].append(result.history[-1]["wall_s"])
            print(f"{name}: epoch {seconds[name][-1]:.1f} s", flush=True)
    padded = statistics.median(seconds["padded"])

    health: dict[str, dict[str, Any]] = {}
    for name in ("bucketed", "grouped"):
        history = pretrain(clue_job(params, data, name, epochs=epochs)).history
        health[name] = {
            "last_epoch": {k: history[-1][k] for k in (*HEALTH, "loss") if k in history[-1]},
            "effective_rank_by_epoch": [round(e["effective_rank"], 2) for e in history],
            "median_epoch_s": statistics.median(e["wall_s"] for e in history),
        }
        print(name, health[name]["last_epoch"], flush=True)

    lines = [
        f"CLUE pre-training on {args.dataset} ({len(data.split)} users, {data.num_items} items), "
        f"conf/{args.dataset}'s encoder, views and heads, batch "
        f"{params['pretrain']['train']['batch_size']}, {args.threads} threads. Epoch times: one "
        f"epoch of each variant in turn, {args.repeats} rounds, medians; ratio = padded / variant "
        "(higher is faster). Health: the last of "
        f"{epochs} epochs, eval-mode user vectors of 512 users.",
        "",
        "| batching | epoch s (median) | speed-up over padded | epochs (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, samples in seconds.items():
        median = statistics.median(samples)
        lines.append(
            f"| {name} | {median:.1f} | {padded / median:.2f}x | "
            + ", ".join(f"{s:.1f}" for s in samples)
            + " |"
        )
    lines += [
        "",
        f"| batching | effective rank (of {params['encoder']['hidden']}) | top-2 PC share | "
        "alignment | uniformity | projection std | loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in health.items():
        last = row["last_epoch"]
        lines.append(
            f"| {name} | {last['effective_rank']:.1f} | {last['top2_share']:.3f} | "
            f"{last['alignment']:.3f} | {last['uniformity']:.3f} | "
            f"{last.get('projection_std', float('nan')):.3f} | {last['loss']:.4f} |"
        )
    write_results(
        f"pretrain_batching_{args.dataset}",
        {
            "settings": {**vars(args), "epochs": epochs},
            "epoch_seconds": seconds,
            "speedup_over_padded": {k: padded / statistics.median(v) for k, v in seconds.items()},
            "health": health,
        },
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
