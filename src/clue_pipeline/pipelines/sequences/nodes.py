"""Thin nodes: catalog tables and ``params:sequences`` in, tables out, counts logged."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from clue_pipeline.data.coldstart import ColdStartSettings, build_coldstart
from clue_pipeline.data.sequences import (
    build_item_index,
    build_sequences,
    filter_interactions,
    list_values_offsets,
    order_interactions,
)
from clue_pipeline.data.splits import next_item_split, profile_split
from clue_pipeline.data.transfer import mark_users

logger = logging.getLogger(__name__)


def filter_and_order_interactions(
    interactions: pd.DataFrame, params: dict[str, Any]
) -> pd.DataFrame:
    """The log in (user, time, file) order, after k-core and minimum-length filtering."""
    kept, report = filter_interactions(
        order_interactions(interactions), params["k_core"], params["min_seq_len"]
    )
    logger.info(
        "filtering (k_core=%d, min_seq_len=%d, %d rounds) kept %d/%d users, %d/%d items, "
        "%d/%d interactions (%d dropped)",
        params["k_core"],
        params["min_seq_len"],
        report.rounds,
        report.users_after,
        report.users_before,
        report.items_after,
        report.items_before,
        report.interactions_after,
        report.interactions_before,
        report.interactions_before - report.interactions_after,
    )
    return kept


def index_items_and_build_sequences(
    filtered_interactions: pd.DataFrame, params: dict[str, Any], max_len: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items indexed by popularity, and each user's most recent ``max_len + 2`` items
    (``encoder.max_len``: the one sequence length of every stage)."""
    item_index = build_item_index(filtered_interactions)
    sequences = build_sequences(filtered_interactions, item_index, max_len)
    lengths = np.diff(list_values_offsets(sequences["items"])[1])
    logger.info(
        "sequences: %d users, %d items (tokens 1..%d), mean length %.1f after keeping the "
        "most recent %d",
        len(sequences),
        len(item_index),
        len(item_index),
        float(lengths.mean()),
        max_len + 2,
    )
    return item_index, sequences


def split_next_item(sequences: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    table, dropped = next_item_split(sequences)
    logger.info(
        "next-item leave-one-out: %d users, %d dropped with fewer than 3 items", len(table), dropped
    )
    return _mark_users(table, params)


def _mark_users(table: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Under ``sequences.transfer.protocol: inductive``, which users pre-training may read."""
    transfer = params["transfer"]
    return mark_users(table, transfer["protocol"], transfer["pretrain_share"], params["seed"])


def split_profiles(
    sequences: pd.DataFrame, users: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    profiling = params["profiling"]
    table, classes = profile_split(
        sequences,
        users,
        tasks=profiling["tasks"],
        ratios=profiling["ratios"],
        seed=params["seed"],
        stratify_min_users=profiling["stratify_min_users"],
        dataset=params["dataset"],
        folds=profiling["folds"],
        fold=profiling["fold"],
    )
    table = _mark_users(table, params)
    for task, names in classes.items():
        rows = table[table["task"] == task]
        logger.info(
            "profiling task '%s': %d users, %d classes, splits %s",
            task,
            len(rows),
            len(names),
            rows["split"].value_counts().to_dict(),
        )
    return table, classes


def build_coldstart_tables(
    filtered_interactions: pd.DataFrame,
    items: pd.DataFrame,
    item_index: pd.DataFrame,
    params: dict[str, Any],
    max_len: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    settings = ColdStartSettings.from_params({**params, "max_len": max_len})
    data = build_coldstart(filtered_interactions, items, item_index, settings, params["dataset"])
    if data.skipped_reason is None:
        logger.info(
            "cold-start (target domain: %s, g=%d): %d/%d users kept, %d without a target item, "
            "%d with fewer than %d source items; %d instances over %d target classes",
            data.target_rule,
            settings.max_targets,
            len(data.source),
            data.users_total,
            data.dropped_without_target,
            data.dropped_short_source,
            settings.min_source_items,
            len(data.targets),
            len(data.target_index),
        )
    return _mark_users(data.source, params), data.targets, data.target_index
