"""Do nearest users mean something? The share of each user's nearest users (cosine over all
users, self excluded) that share the user's gender, age bracket or occupation, for CLUE's and
CLUE-Zero's user vectors, the TF-IDF bag of items and random users, against chance.

Training is the project's own nodes (`kedro run --env ml-1m`: ingest, sequences, CLUE
pre-training, next-item fine-tuning of clue_zero and clue) under ``data/<layer>/<name>/``, so
the run-environment's own folders stay as they are. Every vector, and the bag, reads the user's
last ``encoder.max_len`` items of the stored sequence, as ``embed`` does. The study's command
is ``benchmarks/neighbour_agreement.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from clue_pipeline.embedding import EmbedConfig, user_vector_table, vector_columns
from clue_pipeline.experiments.runner import RunnerConfig, kedro
from clue_pipeline.experiments.statistics import corrected, paired
from clue_pipeline.models.bag_of_items import bag_matrix, inverse_document_frequency
from clue_pipeline.models.encoders import encoder_from_checkpoint
from clue_pipeline.neighbours import IndexConfig, build_index
from clue_pipeline.tasks.batching import model_inputs

ENV, K, SEED = "ml-1m", 10, 0
ATTRIBUTES = ("gender", "age", "occupation")
# after `--pipelines ingest,sequences`
NODES = ["learn.augment.validate_view_policy", "learn.pretrain.next_item.pretrain_clue"]
NODES += [f"learn.finetune.next_item.finetune_next_item_{m}" for m in ("clue_zero", "clue")]
# row -> the checkpoint its [UR] vectors come from (pre-trained encoder or fine-tuned model)
ENCODERS = {
    "CLUE (pre-trained, what `embed` writes)": "06_models/{d}/pretrained/next_item/clue_encoder.pt",
    "CLUE-Zero (next-item fine-tuned)": "06_models/{d}/finetuned/next_item/clue_zero.pt",
    "CLUE (next-item fine-tuned)": "06_models/{d}/finetuned/next_item/clue.pt",
}
BAG, RANDOM = "bag of items (TF-IDF cosine)", "random users"
# (a, b) pairs compared per attribute, paired over users, Holm across all of them
PAIRS = [(a, b) for a in list(ENCODERS)[::2] for b in (list(ENCODERS)[1], BAG)]


def train(project: Path, name: str, overrides: dict, threads: int) -> float:
    """Two `kedro run`s, data then ``NODES`` (log: logs/cells/<name>.log); returns seconds."""
    started = time.perf_counter()
    config = RunnerConfig(project, {ENV: ENV}, threads=threads, python=sys.executable)
    params = {"dataset_name": name, **overrides}
    for args in (["--pipelines", "ingest,sequences"], ["--nodes", ",".join(NODES)]):
        kedro(config, ENV, args, params, name)
    return time.perf_counter() - started


def vector_sets(data: Path, name: str, sequences: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row -> (U, d) vectors in the order of ``sequences``; the bag reads the same items."""
    out = {}
    for row, template in ENCODERS.items():
        path = data / template.format(d=name)  # a versioned dataset: its newest version
        path = path if path.is_file() else sorted(path.iterdir())[-1] / path.name
        checkpoint = torch.load(path, weights_only=True)
        encoder = encoder_from_checkpoint(checkpoint.get("encoder", checkpoint))
        table = user_vector_table(encoder, sequences, EmbedConfig(device="cpu"))
        out[row] = table[vector_columns(table)].to_numpy(np.float32)
    tokens = model_inputs(sequences["items"], encoder.config.max_len, encoder.config.tokens.user)
    bags = bag_matrix(tokens, encoder.config.tokens.items_end)
    out[BAG] = bags.multiply(inverse_document_frequency(bags)[None, :]).toarray()
    return out


def neighbour_rows(vectors: np.ndarray, k: int = K) -> np.ndarray:
    """(U, k) rows of each row's k nearest rows by cosine, itself excluded (exact index)."""
    rows = np.arange(len(vectors))
    ids, _ = build_index(rows, vectors, IndexConfig(method="exact")).neighbours_of(rows, k)
    return ids


def random_rows(users: int, k: int, seed: int) -> np.ndarray:
    """(U, k) distinct rows drawn uniformly from the other users."""
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.choice(users - 1, size=k, replace=False) for _ in range(users)])
    return draws + (draws >= np.arange(users)[:, None])  # skip each user's own row


def agreement(labels: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Per user, the share of their neighbours (rows; -1 = none) with the user's label."""
    found = neighbours >= 0
    same = (labels[np.maximum(neighbours, 0)] == labels[:, None]) & found
    return same.sum(axis=1) / np.maximum(found.sum(axis=1), 1)


def chance(labels: np.ndarray) -> float:
    """The agreement of a neighbour drawn at random: the sum of squared class shares."""
    shares = np.unique(labels, return_counts=True)[1] / len(labels)
    return float((shares**2).sum())


def mean_interval(values: np.ndarray) -> dict:
    half = float(stats.sem(values) * stats.t.ppf(0.975, len(values) - 1))
    mean = float(values.mean())
    return {"mean": mean, "low": mean - half, "high": mean + half, "users": len(values)}


def measure(labels: dict[str, np.ndarray], neighbours: dict[str, np.ndarray]) -> dict:
    """Mean agreement per (row, attribute); the ``PAIRS`` paired over users, Holm-corrected."""
    shares = {(r, a): agreement(labels[a], n) for r, n in neighbours.items() for a in labels}
    rows = [{"row": r, "attribute": a, **mean_interval(s)} for (r, a), s in shares.items()]
    keys = [{"a": a, "b": b, "attribute": t} for a, b in PAIRS for t in labels]
    tests = [paired(shares[k["a"], k["attribute"]], shares[k["b"], k["attribute"]]) for k in keys]
    comparisons = [{**k, **c} for k, c in zip(keys, corrected(tests), strict=True)]
    chances = {a: chance(v) for a, v in labels.items()}
    return {"rows": rows, "comparisons": comparisons, "chance": chances}


def labels_of(profiles: pd.DataFrame, user_ids: pd.Series) -> dict[str, np.ndarray]:
    """Attribute -> class code of each user (the profiling split's labels, bins applied)."""
    table = profiles.pivot(index="user_id", columns="task", values="label").reindex(user_ids)
    missing = table[list(ATTRIBUTES)].isna().sum()
    if missing.any():
        raise ValueError(f"profile_split: users without a label, per task: {missing.to_dict()}")
    return {a: table[a].to_numpy(np.int64) for a in ATTRIBUTES}


def study(project: Path, name: str, overrides: dict, threads: int, skip_training: bool) -> dict:
    """Train (unless ``skip_training``), then measure: the results file's payload."""
    train_s = None if skip_training else train(project, name, overrides, threads)
    data, inputs = project / "data", project / "data" / "05_model_input" / name
    sequences = pd.read_parquet(data / f"03_primary/{name}/sequences.parquet")
    profiles = pd.read_parquet(inputs / "profile_split.parquet")
    neighbours = {row: neighbour_rows(v) for row, v in vector_sets(data, name, sequences).items()}
    neighbours[RANDOM] = random_rows(len(sequences), K, SEED)
    result = measure(labels_of(profiles, sequences["user_id"]), neighbours)
    protocol = {"users": len(sequences), "k": K, "env": ENV, "train_s": train_s}
    protocol["classes"] = json.loads((inputs / "profile_classes.json").read_text())
    # epochs each training ran (fine-tuning stops early)
    paths = sorted((data / f"07_model_output/{name}").glob("*/next_item/*_history.json"))
    protocol["trained"] = {f"{p.parts[-3]}/{p.stem}": len(json.loads(p.read_text())) for p in paths}
    return {"protocol": protocol, **result}


def comparison_row(c: dict) -> list[str]:
    """One comparison's cells: a, b, attribute, a - b [95 % interval], p, p_holm, verdict."""
    interval = (
        f"{c['diff']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]" if c["low"] is not None else "-"
    )
    ps = [f"{c[k]:.2g}" if c[k] is not None else "-" for k in ("p", "p_holm")]
    return [c["a"], c["b"], c["attribute"], interval, *ps, c["verdict_holm"]]


def markdown(payload: dict, overrides: dict) -> str:
    """The results file's body: the protocol, the agreement table and the comparisons."""
    protocol, attributes = payload["protocol"], list(payload["chance"])
    cells: dict[str, list[str]] = {}
    for r in payload["rows"]:
        cells.setdefault(r["row"], []).append(f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
    table = [[row, *by] for row, by in cells.items()]
    table.append(
        [
            "chance (sum of squared class shares)",
            *(f"{payload['chance'][a]:.3f}" for a in attributes),
        ]
    )
    tests = [comparison_row(c) for c in payload["comparisons"]]
    intro = (
        f"MovieLens-1M, {protocol['users']} users (1..2999, the public part), the `{ENV}` "
        f"environment, overrides {overrides or 'none'}; epochs run: "
        f"{protocol['trained']}. Share of each user's {K} nearest users (cosine over all users, "
        "self excluded) with the user's value: mean over users [95 % t interval over users; "
        f"neighbour lists overlap, so it is optimistic]. Random users: seed {SEED}. Below: "
        "paired t over users of the per-user shares, two-sided; `p_holm`: Holm across these "
        f"{len(tests)} comparisons; `not shown` where a difference does not survive it."
    )
    head = ["a", "b", "attribute", "a - b [95 % CI]", "p", "p_holm", "verdict"]
    return "\n".join(
        [intro, "", *_table(["vectors", *attributes], table), "", *_table(head, tests)]
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [head, ["---"] * len(head), *rows]
    return ["| " + " | ".join(map(str, cells)) + " |" for cells in lines]
