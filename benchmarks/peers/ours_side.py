"""Our next-item fine-tuning (SASRec-shaped transformer, CE over all items) as an epoch-by-epoch
worker of ``compare.py``, in the project's venv.

    .venv/bin/python -m benchmarks.peers.ours_side --dataset beauty [--threads 1] [--settings JSON]

It reads the `sequences` pipeline's ``next_item_split`` and ``item_index`` for the dataset and
trains with the project's own ``finetune_next_item`` (the one training loop, ``fit``). The loop's
``validate_fn`` times the full-ranking validation, reports the epoch to the parent and then waits
for the next command (see protocol.py), so the parent can interleave RecBole's epochs between
ours. ``stop`` ends training from inside ``validate_fn``; the best epoch's weights are kept here
with the loop's own rule (strictly higher validation NDCG@10) so they survive that early exit.
The encoder starts from fresh weights (CLUE-Zero, i.e. SASRec trained by our loop), so both
sides do the same job from the same starting point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from benchmarks.peers.protocol import Channel, load_average, peak_rss_gib
from clue_pipeline.config import encoder_config, train_config
from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.heads import NextItemModel
from clue_pipeline.tasks.finetuning import NextItemHead, evaluate_next_item, next_item_model
from clue_pipeline.tasks.task_data import next_item_data
from clue_pipeline.training.loop import TrainConfig, cpu_state_dict, fit

REPO = Path(__file__).resolve().parents[2]
MONITOR = "ndcg@10"


class StopTraining(Exception):
    """Raised inside ``validate_fn`` when the parent ends training (cap reached)."""


def data_paths(dataset: str) -> dict[str, Path]:
    """Where `kedro run --env <dataset> --pipelines ingest,sequences` writes the two tables."""
    return {
        "split": REPO / "data" / "05_model_input" / dataset / "next_item_split.parquet",
        "item_index": REPO / "data" / "03_primary" / dataset / "item_index.parquet",
    }


def load_split(dataset: str) -> tuple[pd.DataFrame, int]:
    paths = data_paths(dataset)
    for path in paths.values():
        if not path.exists():
            raise SystemExit(
                f"{path}: not found; build it with "
                f"`.venv/bin/kedro run --env {dataset} --pipelines ingest,sequences`"
            )
    return pd.read_parquet(paths["split"]), len(pd.read_parquet(paths["item_index"]))


def project_metrics(metrics: dict) -> dict:
    return {
        "hr@10": float(metrics["recall@10"]),
        "ndcg@10": float(metrics["ndcg@10"]),
        "mrr@10": float(metrics["mrr@10"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default="{}", help="JSON: the comparison's shared settings")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = json.loads(args.settings)
    channel = Channel()

    started = time.perf_counter()
    split, num_items = load_split(args.dataset)
    task = next_item_data(split, settings["max_len"], num_items)
    encoder_config, head, rows_layout, config = side_settings(settings, num_items)
    encoder = build_encoder(encoder_config)
    rows = task.training_rows(rows_layout)
    model = next_item_model(encoder, head)
    setup_s = time.perf_counter() - started
    channel.send(
        {
            "ready": True,
            "setup_s": setup_s,
            "users": len(split),
            "items": num_items,
            "train_rows": rows.count,
            "rows": rows_layout,
            "threads": torch.get_num_threads(),
            "device": config.device,
            "parameters": sum(p.numel() for p in encoder.parameters()),
            "encoder": {k: v for k, v in encoder_config.__dict__.items()},
            "head": asdict(head),
            "train_config": {k: v for k, v in config.__dict__.items()},
        }
    )
    if channel.receive()["cmd"] != "go":
        return 0

    state = {"epoch": 0, "best": None, "best_state": None, "best_epoch": -1}
    clock = {"resumed": time.perf_counter(), "load": load_average()}

    def validate(model) -> dict[str, float]:
        train_s = time.perf_counter() - clock["resumed"]
        start = time.perf_counter()
        metrics = evaluate_next_item(model, task.valid)
        eval_s = time.perf_counter() - start
        value = float(metrics[MONITOR])
        if state["best"] is None or value > state["best"]:
            state["best"], state["best_epoch"] = value, state["epoch"]
            state["best_state"] = cpu_state_dict(model)
        channel.send(
            {
                "epoch": state["epoch"],
                "train_s": train_s,
                "eval_s": eval_s,
                "valid": project_metrics(metrics),
                "load_average": clock["load"],
            }
        )
        state["epoch"] += 1
        command = channel.receive()["cmd"]
        if command != "go":
            raise StopTraining(command)
        clock["resumed"], clock["load"] = time.perf_counter(), load_average()
        return metrics

    with contextlib.suppress(StopTraining):  # the parent ended training; the best is kept
        _finetune(rows, model, config, validate)
    channel.send({"finished": True, "epochs": state["epoch"]})
    model = _restore(model, state["best_state"])
    while True:
        command = channel.receive()["cmd"]
        if command == "test":
            start = time.perf_counter()
            metrics = evaluate_next_item(model, task.test)
            channel.send(
                {
                    "best_epoch": state["best_epoch"],
                    "test": project_metrics(metrics),
                    "test_eval_s": time.perf_counter() - start,
                }
            )
        elif command == "quit":
            channel.send({"peak_rss_gib": peak_rss_gib()})
            return 0
        elif command == "go":
            channel.send({"finished": True, "epochs": state["epoch"]})
        else:
            channel.send({"error": f"unknown command {command!r}"})


def side_settings(
    settings: dict, num_items: int
) -> tuple[EncoderConfig, NextItemHead, str, TrainConfig]:
    """Our side's encoder, head, rows and loop settings.

    Without ``settings["recipe"]`` (a recipe of ``benchmarks/rungs.py``), the SASRec shape both
    sides share, one row per user; with it, that recipe's encoder, head, rows and optimiser
    (learning rate, batch, clipping), stopped by the comparison's rule.
    """
    recipe = settings.get("recipe")
    loop = {
        "epochs": settings["max_epochs"],
        "seed": settings["seed"],
        "device": settings["device"],
        "bucket_by_length": settings["bucket_by_length"],
        "drop_last": False,
    }
    if recipe is None:
        shape = ("max_len", "hidden", "blocks", "heads", "dropout", "ffn_hidden")
        encoder = EncoderConfig(num_items=num_items, **{key: settings[key] for key in shape})
        train = {"batch_size": settings["batch_size"], "lr": settings["lr"]}
        return encoder, NextItemHead(), "user", train_config({**train, **loop}, "ours side")
    encoder = encoder_config(recipe["encoder"], num_items, where="ours side encoder")
    train = train_config({**recipe["train"], **loop}, "ours side")
    return encoder, NextItemHead(**recipe["head"]), recipe["rows"], train


def _finetune(rows, model: NextItemModel, config: TrainConfig, validate):
    """``finetune_next_item``'s body (same model, step and loop) with our timed, blocking
    validation: its own validator cannot tell the evaluation's time from the epoch's."""
    torch.manual_seed(config.seed)
    return fit(model, rows.dataset, rows.step, config, validate_fn=validate, lengths=rows.lengths)


def _restore(model: NextItemModel, state: dict | None) -> NextItemModel:
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


if __name__ == "__main__":
    sys.exit(main())
