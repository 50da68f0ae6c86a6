"""Pre-training objectives side by side: health of the user vectors and a frozen probe.

Each cell pre-trains the encoder on the next-item corpus (every user's training part) with the
project's own job builder and training loop, one objective of ``pretrain.objective`` (or the
paper's SGD recipe, or masked items, or nothing), from the ``ml-100k`` run-environment's
parameters (or another run-environment's, ``--dataset``) and a common budget. It then
measures the eval-mode user vectors of all users as the pre-training health monitor does
(effective rank, top-2 PC share, uniformity, alignment of two dropout views) and trains a frozen-encoder linear probe for next-item recommendation
(the pipeline's ``clue_probe``: item scores from the frozen user vector, lr 0.01, early
stopping on validation NDCG@10), reporting test NDCG@10 / HR@10. Results are written after
every cell; cells already in the results file are not rerun.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.objectives [--cells a,b] [--epochs N]
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.objectives --dataset beauty  # objectives_beauty
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from benchmarks.collapse_probe import CONF, load_yaml, merge
from benchmarks.common import RESULTS, load_next_item, write_results
from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config import encoder_config, to_dataclass, train_config
from clue_pipeline.models.encoders import encoder_from_checkpoint
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.finetuning import (
    MethodSpec,
    evaluate_next_item,
    finetune_next_item,
    make_encoder,
)
from clue_pipeline.tasks.pretraining import (
    HealthConfig,
    PretrainJob,
    SimSiamConfig,
    representation_health,
    run_job,
)
from clue_pipeline.tasks.task_data import next_item_data

DATASET = "ml-100k"
NAME = "objectives"
PAPER_TRAIN = {  # SimSiam's recipe, as the paper describes its optimisation
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "lr_scale_batch": True,
    "lr_schedule": "cosine",
    "weight_decay": 1e-4,
    "fixed_lr_params": ["predictor"],
}
PAPER_HEADS = {"proj_dim": 2048, "pred_dim": 512, "output_bn_affine": False}
PROBE = {"epochs": 40, "lr": 0.01, "patience": 10, "monitor": "ndcg@10"}
# Each cell names its item terms: `simsiam` is SimSiam alone, whatever conf/base's default adds.
NO_ITEM_TERMS = {"masked_item_weight": 0.0, "next_item_weight": 0.0}


@dataclass
class Cell:
    name: str
    change: str
    method: str = "clue"  # clue | mip | zero
    objective: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


CELLS = [
    Cell("zero", "untrained encoder (CLUE-Zero)", method="zero"),
    Cell("mip", "masked-item pre-training (reference)", method="mip"),
    Cell("simsiam", "SimSiam, today's recipe: Adam 1e-3, heads 256/64"),
    Cell(
        "simsiam_paper",
        "SimSiam, the paper's recipe: SGD 0.05 x batch/256 cosine, wd 1e-4, fixed predictor lr, "
        "heads 2048/512, plain output BN",
        train=PAPER_TRAIN,
        heads=PAPER_HEADS,
    ),
    Cell("infonce", "InfoNCE, in-batch negatives, temperature 0.2", objective={"name": "infonce"}),
    Cell(
        "vicreg", "VICReg: invariance 25, variance 25, covariance 1", objective={"name": "vicreg"}
    ),
    Cell(
        "infonce_direct",
        "InfoNCE on the user vectors themselves (no projector)",
        objective={"name": "infonce"},
        heads={"projector": False},
    ),
    Cell(
        "vicreg_direct",
        "VICReg on the user vectors themselves (no projector)",
        objective={"name": "vicreg"},
        heads={"projector": False},
    ),
    Cell(
        "simsiam_joint",
        "SimSiam + 1.0 x masked-item cross-entropy",
        objective={"masked_item_weight": 1.0},
    ),
    Cell(
        "simsiam_next",
        "SimSiam + 1.0 x causal next-item cross-entropy",
        objective={"next_item_weight": 1.0},
    ),
    Cell(
        "simsiam_next_share02",
        "SimSiam + 1.0 x next-item cross-entropy at 20 % of the positions per step (cheaper)",
        objective={"next_item_weight": 1.0, "next_item_share": 0.2},
    ),
    Cell(
        "next_only",
        "causal next-item cross-entropy alone (view_weight 0: what the views add to it)",
        objective={"next_item_weight": 1.0, "view_weight": 0.0},
    ),
    Cell(
        "infonce_joint",
        "InfoNCE + 1.0 x masked-item cross-entropy",
        objective={"name": "infonce", "masked_item_weight": 1.0},
    ),
    Cell(
        "vicreg_joint",
        "VICReg + 1.0 x masked-item cross-entropy",
        objective={"name": "vicreg", "masked_item_weight": 1.0},
    ),
]


def parameters(dataset: str = DATASET) -> dict[str, Any]:
    """conf/base merged with a run-environment's parameters, as ``kedro run --env``."""
    params: dict[str, Any] = {}
    for name in ("parameters.yml", "parameters_pretrain.yml", "parameters_augment.yml"):
        params = merge(params, load_yaml(CONF / "base" / name))
    params = merge(params, load_yaml(CONF / "base" / "parameters_finetune.yml"))
    return merge(params, load_yaml(CONF / dataset / "parameters_training.yml"))


def run_cell(cell: Cell, params: dict[str, Any], data, epochs: int, probe_epochs: int) -> dict:
    encoder = encoder_config(params["encoder"], num_items=data.num_items)
    tokens = model_inputs(data.split["train"], encoder.max_len, encoder.tokens.user)
    train_params = {**params["pretrain"]["train"], **cell.train, "epochs": epochs}
    train_params.pop("checkpoint_dir", None)
    train_params.update(progress=False, resume=False, checkpoint_every_steps=None, device="cpu")
    train = train_config(train_params, "pretrain.train")
    views = validate_view_policy(params["augment"]["views"])
    started = time.perf_counter()
    history: list[dict[str, Any]] = []
    if cell.method == "zero":
        checkpoint = None
    else:
        job = PretrainJob(
            method=cell.method,
            tokens=tokens,
            encoder=encoder,
            train=train,
            view_policy=views if cell.method == "clue" else None,
            simsiam=SimSiamConfig(**{**params["pretrain"]["simsiam"], **cell.heads}),
            objective=to_dataclass(
                ObjectiveConfig,
                {**params["pretrain"].get("objective", {}), **NO_ITEM_TERMS, **cell.objective},
                "o",
            ),
            mask_ratio=float(params["pretrain"]["masked_item"]["mask_ratio"]),
            health=HealthConfig(users=512, min_effective_rank=None),
        )
        checkpoint, result = run_job(job)
        history = result.history
    pretrain_s = time.perf_counter() - started
    if checkpoint is None:
        torch.manual_seed(train.seed)
        model = make_encoder(encoder, None, MethodSpec("clue_zero"))
    else:
        model = encoder_from_checkpoint(checkpoint)
    dropout_views = validate_view_policy({"strategies": ["dropout"]})
    health = representation_health(
        model, torch.as_tensor(tokens), dropout_views, encoder.tokens.mask, seed=7
    )
    started = time.perf_counter()
    probe = probe_next_item(model, data, params, probe_epochs)
    return {
        "cell": cell.name,
        "change": cell.change,
        "epochs": 0 if cell.method == "zero" else epochs,
        "pretrain_s": round(pretrain_s, 1),
        "probe_s": round(time.perf_counter() - started, 1),
        "health": health,
        "probe": probe,
        "loss_curve": [round(float(h["loss"]), 4) for h in history],
        "rank_curve": [round(float(h["effective_rank"]), 2) for h in history],
    }


def probe_next_item(encoder, data, params: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Frozen-encoder linear probe (the pipeline's ``clue_probe``), test metrics at the best
    validation epoch."""
    task = next_item_data(data.split, encoder.config.max_len, data.num_items)
    train_params = {
        **params["finetune"]["train"],
        **params["finetune"]["tasks"]["next_item"],
        **PROBE,
        "epochs": epochs,
    }
    train_params.pop("checkpoint_dir", None)
    train_params.update(progress=False, resume=False, checkpoint_every_steps=None, device="cpu")
    config = train_config(train_params, "finetune.train")
    model, result = finetune_next_item(
        task.training_rows("user"), task.valid, encoder, config, freeze_encoder=True
    )
    test = evaluate_next_item(model, task.test)
    return {
        "best_epoch": result.best_epoch,
        "valid_ndcg@10": max(h["ndcg@10"] for h in result.history),
        "test_ndcg@10": float(test["ndcg@10"]),
        "test_hr@10": float(test["recall@10"]),  # one target per user: recall@10 = HR@10
    }


def setting(params: dict[str, Any]) -> str:
    """The run-environment's pre-training setting in words, for the table's caption."""
    encoder, train = params["encoder"], params["pretrain"]["train"]
    heads = params["pretrain"]["simsiam"]
    block = f"{encoder.get('norm', 'pre')}-LN block, {encoder['heads']} heads"
    return (
        f"{', '.join(params['augment']['views']['strategies'])} views, {block}, encoder dropout "
        f"{encoder['dropout']}, batch {train['batch_size']}, {train['optimizer'].capitalize()} "
        f"{train['lr']:g}, heads {heads['proj_dim']}/{heads['pred_dim']}"
    )


def markdown(
    rows: list[dict[str, Any]], epochs: int, dataset: str, users: int, params: dict[str, Any]
) -> str:
    lines = [
        f"Every objective pre-trains the encoder for {epochs} epochs on the {dataset} next-item "
        f"corpus ({users} users, training parts only; `{dataset}` run-environment: "
        f"{setting(params)} unless the row says "
        f"otherwise). Health: eval-mode `[UR]` vectors of all {users} users, as the per-epoch "
        "monitor measures them: effective rank (of 64), share of variance on the top two "
        "principal components, uniformity and alignment (two dropout views; lower is better for "
        "both). Probe: frozen encoder, linear next-item head (lr 0.01, up to "
        f"{PROBE['epochs']} epochs, patience {PROBE['patience']} on validation NDCG@10), test "
        "NDCG@10 / HR@10, full ranking. One seed per cell; rank curve: effective rank after "
        "each pre-training epoch (first, middle, last).",
        "",
        "| cell | change | eff. rank | top-2 share | uniformity | alignment | probe NDCG@10 "
        "| probe HR@10 | rank curve | loss first -> last | pre-train s | probe s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        h, p = row["health"], row["probe"]
        curve = row["rank_curve"]
        ranks = (
            "-"
            if not curve
            else " / ".join(f"{curve[i]:.1f}" for i in sorted({0, len(curve) // 2, len(curve) - 1}))
        )
        losses = row["loss_curve"]
        loss = "-" if not losses else f"{losses[0]:.3f} -> {losses[-1]:.3f}"
        lines.append(
            f"| {row['cell']} | {row['change']} | {h['effective_rank']:.1f} "
            f"| {h['top2_share']:.1%} | {h['uniformity']:.3f} | {h['alignment']:.3f} "
            f"| {p['test_ndcg@10']:.4f} | {p['test_hr@10']:.4f} | {ranks} | {loss} "
            f"| {row['pretrain_s']} | {row['probe_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    parser.add_argument("--epochs", type=int, default=20, help="pre-training epochs per cell")
    parser.add_argument("--probe-epochs", type=int, default=PROBE["epochs"])
    parser.add_argument("--dataset", default=DATASET, help="run-environment (conf/<dataset>)")
    parser.add_argument("--name", default=None, help="results file stem (default by dataset)")
    parser.add_argument("--fresh", action="store_true", help="ignore the rows already stored")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    name = args.name or (NAME if args.dataset == DATASET else f"{NAME}_{args.dataset}")
    params = parameters(args.dataset)
    data = load_next_item(args.dataset, max_len=int(params["encoder"]["max_len"]))
    by_name = {cell.name: cell for cell in CELLS}
    chosen = [by_name[n] for n in args.cells.split(",") if n] if args.cells else CELLS
    path = RESULTS / f"{name}.json"
    rows = [] if args.fresh or not path.exists() else json.loads(path.read_text())["results"]
    done = {row["cell"] for row in rows}
    for cell in [c for c in chosen if c.name not in done]:
        row = run_cell(cell, params, data, args.epochs, args.probe_epochs)
        print(
            f"{cell.name:>15}: eff.rank {row['health']['effective_rank']:.1f} "
            f"top2 {row['health']['top2_share']:.3f} "
            f"probe ndcg@10 {row['probe']['test_ndcg@10']:.4f} "
            f"({row['pretrain_s']} + {row['probe_s']} s)",
            flush=True,
        )
        rows.append(row)
        payload = {
            "dataset": args.dataset,
            "users": int(len(data.split)),
            "num_items": data.num_items,
            "epochs": args.epochs,
            "probe": {**PROBE, "epochs": args.probe_epochs},
            "cells": [asdict(by_name[r["cell"]]) for r in rows],
            "results": rows,
        }
        text = markdown(rows, args.epochs, args.dataset, int(len(data.split)), params)
        write_results(name, payload, text)


if __name__ == "__main__":
    main()
