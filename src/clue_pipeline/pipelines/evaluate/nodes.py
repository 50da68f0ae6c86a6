"""Nodes of the `evaluate` pipeline: test metrics per task x method, and their summary table."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config import DEFAULT_READOUT, EvaluateSettings, parse_evaluate
from clue_pipeline.data.splits import SPLITS
from clue_pipeline.data.transfer import downstream_rows
from clue_pipeline.figures import loss_curves, user_vector_pca
from clue_pipeline.models.encoders import encoder_from_checkpoint
from clue_pipeline.models.representation import summarise_representation
from clue_pipeline.run_summary import metric_name
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.finetuning import PROTOCOLS, rank_next_items, restore_model
from clue_pipeline.tasks.finetuning import (
    evaluate_coldstart as coldstart_metrics,
)
from clue_pipeline.tasks.finetuning import (
    evaluate_profiling as profiling_metrics,
)
from clue_pipeline.tasks.task_data import classification_data, next_item_data

logger = logging.getLogger(__name__)


def evaluate_next_item(
    model_checkpoint: dict,
    split: pd.DataFrame,
    item_index: pd.DataFrame,
    evaluate_params: dict | EvaluateSettings,
    dataset_name: str,
) -> dict:
    """Leave-one-out test: full ranking over all items after train + valid.

    ``metrics`` follow ``evaluate.exclude_history``; ``protocols`` holds both rankings (history
    kept, as the paper; history excluded, as published numbers on the S3-Rec files), so any
    two results can be compared under the same protocol. Each protocol ranks with the model
    selected under it, where the checkpoint carries one per protocol (``other_selection``);
    ``selection`` says per protocol which epoch's weights were tested, selected under which
    protocol, and whether that selection saw its curve to the end (``next_item_selection``).
    """
    split = downstream_rows(split)
    data = next_item_data(split, int(model_checkpoint["max_len"]), len(item_index))
    models = selected_models(model_checkpoint)
    if len(models) == 1:  # one model for both: a checkpoint from before, or nothing trained
        (model,) = models.values()
        kept, excluded = rank_next_items(model, data.test, (False, True))
        protocols = {"history_kept": kept, "history_excluded": excluded}
    else:
        protocols = {
            name: rank_next_items(models[name], data.test, (exclude,))[0]
            for exclude, name in PROTOCOLS.items()
        }
    chosen = PROTOCOLS[parse_evaluate(evaluate_params).exclude_history]
    record = _record(
        model_checkpoint, "next_item", dataset_name, protocols[chosen], "leave-one-out"
    )
    record["protocols"] = protocols
    record["selection"] = next_item_selection(model_checkpoint)
    record["training_rows"] = model_checkpoint.get("training_rows", "user")
    record["readout"] = model_checkpoint.get("readout", DEFAULT_READOUT)
    return record


def selected_models(checkpoint: dict) -> dict:
    """The next-item model selected under each protocol, by protocol name, where the checkpoint
    carries both selections; otherwise its one model (``{None: model}``)."""
    model = restore_model(checkpoint)
    second = checkpoint.get("other_selection")
    if second is None:
        return {None: model}
    return {
        checkpoint["selected_under"]: model,
        second["protocol"]: restore_model(checkpoint, second["state_dict"]),
    }


def next_item_selection(checkpoint: dict) -> dict[str, dict]:
    """Per protocol: the epoch whose weights ranked its test (``selected_epoch``), the protocol
    they were selected under, and ``selection_complete``: false where the run stopped (early,
    on the other protocol's curve) fewer than ``patience`` epochs past that best epoch, so a
    later epoch might have won. A checkpoint without a second selection tested one model under
    both protocols; one written before selections were recorded (or a model not trained, the
    popularity baseline) says None for what it does not know."""
    main = {
        "selected_epoch": checkpoint.get("best_epoch"),
        "selected_under": checkpoint.get("selected_under"),
        "selection_complete": True,  # the curve early stopping followed
    }
    second = checkpoint.get("other_selection")
    if second is None:
        note = "one model for both protocols: the checkpoint holds no selection per protocol"
        return {name: {**main, "note": note} for name in PROTOCOLS.values()}
    return {
        main["selected_under"]: main,
        second["protocol"]: {
            "selected_epoch": int(second["best_epoch"]),
            "selected_under": second["protocol"],
            "selection_complete": bool(second["selection_complete"]),
        },
    }


def split_counts(profile_split: pd.DataFrame) -> str:
    """Users per part of each task's split (``gender 2399/150/450``): the split read, whether
    the 80/5/15 one or a fold, so a record never names a split it did not use."""
    counts = profile_split.groupby(["task", "split"], sort=False).size()
    return ", ".join(
        f"{task} " + "/".join(str(int(counts.get((task, part), 0))) for part in SPLITS)
        for task in profile_split["task"].unique()
    )


def evaluate_profiling(
    model_checkpoints: dict,
    profile_split: pd.DataFrame,
    profile_classes: dict,
    item_index: pd.DataFrame,
    evaluate_params: dict,
    dataset_name: str,
) -> dict:
    """Accuracy and macro-F1 (with the majority-class rate) per profile attribute."""
    if "skipped" in model_checkpoints:
        return {
            "task": "profiling",
            "dataset": dataset_name,
            "skipped": model_checkpoints["skipped"],
        }
    profile_split = downstream_rows(profile_split)
    sequences = profile_split.drop_duplicates("user_id")[["user_id", "items"]]
    per_attribute = {}
    method = readout = None
    for attribute, checkpoint in model_checkpoints.items():
        model = restore_model(checkpoint)
        method, readout = checkpoint["method"], checkpoint.get("readout")
        max_len = int(checkpoint["max_len"])
        data = classification_data(
            sequences,
            profile_split[profile_split["task"] == attribute],
            "label",
            max_len,
            len(item_index),
            len(profile_classes[attribute]),
        )
        per_attribute[attribute] = profiling_metrics(
            model, data.tokens["test"], data.labels["test"], data.num_classes
        )
    return {
        "task": "profiling",
        "method": method,
        "dataset": dataset_name,
        "split": "users train/valid/test, stratified, seeded: " + split_counts(profile_split),
        "readout": readout,  # the user vector classified (None: no encoder)
        "metrics": per_attribute,
    }


def evaluate_coldstart(
    model_checkpoint: dict,
    coldstart_source: pd.DataFrame,
    coldstart_targets: pd.DataFrame,
    item_index: pd.DataFrame,
    evaluate_params: dict,
    dataset_name: str,
) -> dict:
    """Full ranking of all target-domain items for every (test user, target item) pair."""
    model = restore_model(model_checkpoint)
    data = classification_data(
        downstream_rows(coldstart_source),
        coldstart_targets,
        "target",
        int(model_checkpoint["max_len"]),
        len(item_index),
        int(model_checkpoint["num_classes"]),
    )
    metrics = coldstart_metrics(model, data.tokens["test"], data.labels["test"])
    record = _record(model_checkpoint, "coldstart", dataset_name, metrics, protocol="users 80/5/15")
    record["readout"] = model_checkpoint.get("readout")
    return record


def summarise_metrics(**metrics: dict) -> tuple[dict, str]:
    """All test metrics as one JSON and one Markdown table (rows: task x method)."""
    rows = []
    for record in metrics.values():
        if "skipped" in record:
            continue
        if record["task"] == "profiling":
            for attribute, values in record["metrics"].items():
                rows.append(
                    {"task": f"profiling/{attribute}", "method": record["method"], **values}
                )
        else:
            rows.append({"task": record["task"], "method": record["method"], **record["metrics"]})
    table = pd.DataFrame(rows)
    skipped = sorted({r["skipped"] for r in metrics.values() if "skipped" in r})
    markdown = _markdown(table, skipped)
    return {"rows": rows, "skipped": skipped}, markdown


def _markdown(table: pd.DataFrame, skipped: list[str]) -> str:
    lines = ["# Test metrics", ""]
    columns = {
        "ranking": ["recall@10", "mrr@10", "ndcg@10", "recall@20", "ndcg@20", "n_users"],
        "classification": ["accuracy", "macro_f1", "majority_rate", "n"],
    }
    for kind, names in columns.items():
        part = table.dropna(subset=[names[0]]) if names[0] in table else table.iloc[0:0]
        if part.empty:
            continue
        header = " | ".join(metric_name(n) for n in names)  # the names MLflow shows
        lines += [f"## {kind}", "", f"| task | method | {header} |"]
        lines.append("|" + " --- |" * (len(names) + 2))
        for _, row in part.iterrows():
            cells = [_cell(row.get(n)) for n in names]
            lines.append(f"| {row['task']} | {row['method']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "Full ranking over all items (no sampled negatives); ties count against the target; "
        "history items are excluded only where `history_excluded` is true in the JSON."
    )
    lines += [f"- {reason}" for reason in skipped]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _record(checkpoint: dict, task: str, dataset: str, metrics: dict, protocol: str) -> dict:
    logger.info(
        "%s %s: %s",
        task,
        checkpoint["method"],
        {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)},
    )
    return {
        "task": task,
        "method": checkpoint["method"],
        "dataset": dataset,
        "protocol": protocol,
        "history_excluded": bool(metrics.get("history_excluded", False)),
        "metrics": metrics,
    }


def plot_pretraining_curves(**histories: list[dict]):
    """Loss and z-std per epoch of every pre-training run (collapse shows as z-std -> 0)."""
    labelled = {name.replace("__", " / "): h for name, h in histories.items() if h}
    return loss_curves(labelled, metrics=("loss", "z_std", "uniformity"))


def plot_user_vectors(
    encoder_checkpoint: dict,
    sequences: pd.DataFrame,
    users: pd.DataFrame,
    view_policy: dict,
    figure_params: dict,
):
    """2-D PCA of every user's CLUE vector, coloured by a user attribute.

    The first attribute of ``figure_params['colour_by']`` the users table has is used (gender
    on MovieLens); data without attributes (ml-latest-small) is coloured by history length.
    """
    encoder = encoder_from_checkpoint(encoder_checkpoint).eval()
    config = encoder.config
    tokens = model_inputs(sequences["items"], config.max_len, config.tokens.user)
    summary = summarise_representation(
        encoder,
        tokens,
        validate_view_policy(view_policy),
        quality_users=int(figure_params["quality_users"]),
        seed=int(figure_params["seed"]),
    )
    labels, label_name = _user_labels(sequences, users, figure_params["colour_by"])
    quality = summary.quality
    return user_vector_pca(
        summary.vectors, labels, label_name, quality["alignment"], quality["uniformity"]
    )


def _user_labels(sequences: pd.DataFrame, users: pd.DataFrame, candidates: list[str]):
    for column in candidates:
        if column in users.columns:
            labels = sequences[["user_id"]].merge(users, on="user_id", how="left")[column]
            return labels.fillna("unknown").to_numpy(), column
    lengths = sequences["items"].map(len).to_numpy()
    edges = np.quantile(lengths, [1 / 3, 2 / 3])
    names = np.array(["short", "medium", "long"], dtype=object)
    return names[np.searchsorted(edges, lengths, side="right")], "history length (tercile)"
