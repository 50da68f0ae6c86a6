"""Why CLUE's ML-100K user vectors lie on a circle: a small grid of pre-training settings.

Each cell pre-trains CLUE in this process with the project's own job builder and training loop
(no Kedro run), on the ML-100K next-item corpus prepared by the pipelines, starting from the
``ml-100k`` run-environment's parameters and changing one thing. After training it measures the
space of user vectors (``[UR]`` output, eval mode) as the PCA figure sees it: the share of
variance on PC1 + PC2, the effective rank (exp of the entropy of the normalised singular values),
uniformity and alignment (Wang & Isola 2020), and the correlation of PC1 with the history length
(a feature the two views of a ``dropout`` pair always share). The same numbers are also taken one
layer later, after the projector's first Linear-BN-ReLU, to see whether the encoder output alone
is narrow. A masked-item pre-training cell and the untrained encoder are the references.

    CLUE_NUM_THREADS=1 .venv/bin/python -m benchmarks.collapse_probe [--cells a,b] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from benchmarks.common import REPO, RESULTS, write_results
from clue_pipeline.augment import make_views, validate_view_policy
from clue_pipeline.config import encoder_config, train_config
from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.models.clue import alignment, uniformity
from clue_pipeline.tasks.batching import model_inputs, trim_padding
from clue_pipeline.tasks.finetuning import by_length
from clue_pipeline.tasks.pretraining import PretrainJob, SimSiamConfig, build_pretraining
from clue_pipeline.training.loop import TrainResult, fit

DATASET = "ml-100k"
CONF = REPO / "conf"
QUALITY_USERS = 512  # users of the alignment pairs and uniformity, as the pre-training log
SEED_VIEWS = 7  # seed of the alignment views, as the report's Fig. 7
POINT_UNIFORMITY = -0.3  # above: users within ~0.4 of each other on the sphere (one point)
INFONCE_TEMPERATURE = 0.2  # of the contrastive diagnostic cell (SimCLR-like)
LOW_RANK_SHARE = 0.9  # PC1 + PC2 share at or above which the space is called low-rank


@dataclass
class Cell:
    """One setting: a name, what it changes, and the overrides of the ml-100k parameters."""

    name: str
    change: str
    method: str = "clue"
    encoder: dict[str, Any] = field(default_factory=dict)
    views: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    final_norm: bool = True
    dataset: str = DATASET  # the corpus; the parameters stay the ml-100k run-environment's
    output_bn_affine: bool = True  # False: SimSiam's builder, whose last projector BN has no affine
    objective: str = "simsiam"  # "infonce": in-batch negatives on z (a diagnostic, not CLUE)


CELLS: list[Cell] = [
    Cell("zero", "untrained encoder (CLUE-Zero)", train={"epochs": 0}),
    Cell("base", "ml-100k settings: dropout views, encoder dropout 0.5, 50 epochs, batch 128"),
    Cell("epochs10", "10 epochs", train={"epochs": 10}),
    Cell("views_crop", "views: crop 0.6", views={"strategies": ["crop"], "crop_ratio": 0.6}),
    Cell("views_mask", "views: mask 0.3", views={"strategies": ["mask"], "mask_ratio": 0.3}),
    Cell(
        "views_crop_mask",
        "views: crop 0.6 then mask 0.3",
        views={"strategies": ["crop", "mask"], "crop_ratio": 0.6, "mask_ratio": 0.3},
    ),
    Cell("dropout0.1", "encoder dropout 0.1", encoder={"dropout": 0.1}),
    Cell("dropout0.3", "encoder dropout 0.3", encoder={"dropout": 0.3}),
    Cell("no_final_norm", "no final LayerNorm on the encoder output", final_norm=False),
    Cell("lr1e-4", "lr 1e-4", train={"lr": 1e-4}),
    Cell(
        "batch512", "batch 512 (1 step per epoch: 943 users, drop_last)", train={"batch_size": 512}
    ),
    Cell("mip", "masked-item pre-training, same budget (reference)", method="mip"),
    Cell(
        "base_seed43",
        "ml-100k settings, seed 43 (seed spread of the base cell)",
        train={"seed": 43},
    ),
    Cell(
        "bucketed",
        "batches of similar history length (pretrain.train.bucket_by_length)",
        train={"bucket_by_length": True},
    ),
    Cell("batch64", "batch 64 (the paper's)", train={"batch_size": 64}),
    Cell(
        "infonce",
        "diagnostic, not CLUE: InfoNCE with in-batch negatives on the projector outputs",
        objective="infonce",
    ),
    Cell(
        "infonce_seed43", "the infonce diagnostic, seed 43", train={"seed": 43}, objective="infonce"
    ),
    Cell(
        "output_bn_plain",
        "projector's last BN without affine parameters (as SimSiam's reference builder)",
        output_bn_affine=False,
    ),
    Cell(
        "beauty_epochs5",
        "Beauty's corpus (22k users, 24x ML-100K), 5 epochs (2.5x the steps of base)",
        train={"epochs": 5},
        dataset="beauty",
    ),
    Cell(
        "views_permute",
        "views: permute 0.6",
        views={"strategies": ["permute"], "permute_ratio": 0.6},
    ),
]


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Soft merge as Kedro's run-environments do: only the keys named in ``over`` change."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parameters() -> dict[str, Any]:
    """conf/base parameters merged with the ml-100k run-environment's, as `kedro run --env`."""
    params: dict[str, Any] = {}
    for name in ("parameters.yml", "parameters_pretrain.yml", "parameters_augment.yml"):
        params = merge(params, load_yaml(CONF / "base" / name))
    return merge(params, load_yaml(CONF / DATASET / "parameters_training.yml"))


def corpus_tokens(max_len: int, dataset: str = DATASET) -> tuple[np.ndarray, int]:
    """Model inputs of the next-item corpus (train parts only) and the number of items."""
    split = pd.read_parquet(REPO / "data" / "05_model_input" / dataset / "next_item_split.parquet")
    item_index = pd.read_parquet(REPO / "data" / "03_primary" / dataset / "item_index.parquet")
    num_items = len(item_index)
    return model_inputs(split["train"], max_len, special_tokens(num_items).user), num_items


def spectrum(vectors: np.ndarray) -> dict[str, float]:
    """PC1+PC2 share of variance and effective rank (Roy & Vetterli 2007) of centred vectors."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(centred, compute_uv=False)
    variance = singular**2 / (singular**2).sum()
    p = singular / singular.sum()
    p = p[p > 0]
    return {
        "pc12_share": float(variance[:2].sum()),
        "pc1_share": float(variance[0]),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
    }


def pc1_length_corr(vectors: np.ndarray, lengths: np.ndarray) -> float:
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    pc1 = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
    return float(abs(np.corrcoef(pc1, lengths)[0, 1]))


@torch.no_grad()
def space_numbers(
    represent: nn.Module, tokens: np.ndarray, policy, mask_token: int, lengths: np.ndarray
) -> dict[str, float]:
    """Spectrum, uniformity (eval mode, all users) and alignment (two train-mode views)."""
    represent.eval()
    vectors = by_length(represent, tokens, 1024, torch.device("cpu")).double().numpy()
    sample = torch.as_tensor(tokens[:QUALITY_USERS])
    generator = torch.Generator().manual_seed(SEED_VIEWS)
    represent.train()
    view_a, view_b = make_views(sample, policy, generator, mask_token)
    aligned = alignment(represent(view_a), represent(view_b))
    represent.eval()
    return {
        **spectrum(vectors),
        "uniformity": float(uniformity(torch.as_tensor(vectors[:QUALITY_USERS]))),
        "alignment": float(aligned),
        "pc1_length_corr": pc1_length_corr(vectors, lengths),
    }


class UserVector(nn.Module):
    """Encoder -> user vector, optionally through the projector's first Linear-BN-ReLU."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        user = self.encoder(tokens).user
        return user if self.head is None else self.head(user)


def infonce_step(model, batch, generator, policy, mask_token: int):
    """Same views, encoder and projector as CLUE, but a contrastive loss: other users repel."""
    (tokens,) = trim_padding(*batch)
    view_a, view_b = make_views(tokens, policy, generator, mask_token)
    z1 = F.normalize(model.projector(model.encoder(view_a).user), dim=1)
    z2 = F.normalize(model.projector(model.encoder(view_b).user), dim=1)
    logits = z1 @ z2.T / INFONCE_TEMPERATURE
    labels = torch.arange(len(z1), device=z1.device)
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return loss, {}


def step_function(cell: Cell, default, policy, encoder):
    if cell.objective == "simsiam":
        return default
    return partial(infonce_step, policy=policy, mask_token=encoder.tokens.mask)


def run_cell(cell: Cell, params: dict[str, Any], tokens: np.ndarray, num_items: int) -> dict:
    encoder = encoder_config({**params["encoder"], **cell.encoder}, num_items=num_items)
    train_params = {**params["pretrain"]["train"], **cell.train}
    train_params.pop("checkpoint_dir", None)
    train_params.update(progress=False, resume=False, checkpoint_every_steps=None, device="cpu")
    untrained = int(train_params["epochs"]) == 0  # the config checks ask for >= 1 epoch
    train = train_config(
        {**train_params, "epochs": max(1, int(train_params["epochs"]))}, "pretrain.train"
    )
    views = cell.views or params["augment"]["views"]
    policy = validate_view_policy({**params["augment"]["views"], **views})
    job = PretrainJob(
        method=cell.method,
        tokens=tokens,
        encoder=encoder,
        train=train,
        view_policy=policy,
        simsiam=SimSiamConfig(**params["pretrain"]["simsiam"]),
        mask_ratio=float(params["pretrain"]["masked_item"]["mask_ratio"]),
    )
    task = build_pretraining(job)
    model_encoder = task.model.encoder
    if not cell.final_norm:
        model_encoder.final_norm = nn.Identity()
    if not cell.output_bn_affine:
        width = task.model.projector[-1].num_features
        task.model.projector[-1] = nn.BatchNorm1d(width, affine=False)
    start = time.perf_counter()
    result = (
        TrainResult(None, [], 0, 0)
        if untrained
        else fit(
            task.model, task.dataset, step_function(cell, task.step_fn, policy, encoder), train
        )
    )
    seconds = time.perf_counter() - start
    lengths = (tokens[:, :-1] != 0).sum(axis=1)
    # Alignment pairs: dropout views for every cell, so the numbers compare across cells.
    dropout_policy = validate_view_policy({"strategies": ["dropout"]})
    row = {
        "cell": cell.name,
        "change": cell.change,
        "dataset": cell.dataset,
        "users": int(len(tokens)),
        "seconds": round(seconds, 1),
        "steps": result.steps,
        "loss_first": result.history[0]["loss"] if result.history else None,
        "loss_last": result.history[-1]["loss"] if result.history else None,
        "loss_curve": [round(float(h["loss"]), 4) for h in result.history],
        "encoder": space_numbers(
            UserVector(model_encoder), tokens, dropout_policy, encoder.tokens.mask, lengths
        ),
    }
    if cell.method == "clue":
        head = task.model.projector[:3]  # first Linear-BN-ReLU of the projector
        row["projector_layer1"] = space_numbers(
            UserVector(model_encoder, head), tokens, dropout_policy, encoder.tokens.mask, lengths
        )
    return row


def verdict(numbers: dict[str, float]) -> str:
    """Point collapse, low-rank (dimensional) collapse, or a spread space."""
    if numbers["uniformity"] > POINT_UNIFORMITY:
        return "point"
    return "low-rank" if numbers["pc12_share"] >= LOW_RANK_SHARE else "spread"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "User vectors of the 943 ML-100K users after CLUE pre-training on the next-item corpus, "
        "one setting changed per row from the `ml-100k` run-environment (dropout views, encoder "
        "dropout 0.5, 50 epochs, batch 128, lr 1e-3, SimSiam 256/64). Encoder: `[UR]` output, "
        "eval mode; proj. L1: after the projector's first Linear-BN-ReLU. PC1+2: share of "
        "variance on two components; eff. rank: exp entropy of normalised singular values "
        "(of 64, or 256 after the projector); uniformity and alignment (two dropout views): lower "
        "is better; corr(PC1, len): absolute correlation of PC1 with the history length. Loss: "
        "SimSiam loss of the first and last epoch (-1 = perfect agreement). One seed per cell. "
        "Shares of variance are blind to scale: a space whose users all sit near one point "
        "(uniformity near 0) can still look spread, hence the verdict column: "
        f"`point` = uniformity > {POINT_UNIFORMITY} (users nearly one direction), `low-rank` = "
        f"PC1+2 >= {LOW_RANK_SHARE:.0%}, `spread` otherwise.",
        "",
        "| cell | change | verdict | PC1+2 | eff. rank | uniformity | alignment | corr(PC1, len) "
        "| proj. L1 PC1+2 | proj. L1 eff. rank | loss first -> last | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        enc, proj = row["encoder"], row.get("projector_layer1")
        loss = (
            "-"
            if row["loss_last"] is None
            else f"{row['loss_first']:.3f} -> {row['loss_last']:.3f}"
        )
        lines.append(
            f"| {row['cell']} | {row['change']} | {verdict(enc)} | {enc['pc12_share']:.1%} "
            f"| {enc['effective_rank']:.1f} | {enc['uniformity']:.3f} | {enc['alignment']:.3f} "
            f"| {enc['pc1_length_corr']:.2f} "
            f"| {'-' if proj is None else format(proj['pc12_share'], '.1%')} "
            f"| {'-' if proj is None else format(proj['effective_rank'], '.1f')} "
            f"| {loss} | {row['seconds']} |"
        )
    return "\n".join(lines)


def earlier_rows(name: str) -> list[dict[str, Any]]:
    """The result rows of an earlier run, so a long grid can be measured in several sittings."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["results"] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="override every cell's epochs")
    parser.add_argument("--name", default="collapse_probe", help="results file stem")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of an earlier run's results file; cells already there are not rerun",
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("CLUE_NUM_THREADS", "1")))
    params = parameters()
    tokens, num_items = corpus_tokens(int(params["encoder"]["max_len"]))
    by_name = {cell.name: cell for cell in CELLS}
    chosen = [by_name[n] for n in args.cells.split(",") if n] if args.cells else CELLS
    if args.epochs is not None:
        chosen = [
            replace(c, train={**c.train, "epochs": min(args.epochs, c.train.get("epochs", 10**9))})
            for c in chosen
        ]
    rows = earlier_rows(args.name) if args.append else []
    done = {row["cell"] for row in rows}
    chosen = [cell for cell in chosen if cell.name not in done]
    for cell in chosen:
        if cell.dataset == DATASET:
            row = run_cell(cell, params, tokens, num_items)
        else:
            row = run_cell(
                cell, params, *corpus_tokens(int(params["encoder"]["max_len"]), cell.dataset)
            )
        print(
            f"{row['cell']:>16}: PC1+2 {row['encoder']['pc12_share']:.3f} "
            f"eff.rank {row['encoder']['effective_rank']:.1f} "
            f"loss {row['loss_last']} ({row['seconds']} s)",
            flush=True,
        )
        rows.append(row)
        payload = {
            "dataset": DATASET,
            "users": int(len(tokens)),
            "num_items": num_items,
            "cells": [asdict(by_name[row["cell"]]) for row in rows],
            "results": rows,
        }
        write_results(args.name, payload, markdown(rows))  # after every cell: partial runs count


if __name__ == "__main__":
    main()
