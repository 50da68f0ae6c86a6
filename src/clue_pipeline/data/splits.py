"""Evaluation splits: leave-one-out for next-item, seeded user-level splits for labels.

Leave-one-out follows the paper (section V): the last item of each sequence is the test
target, the one before it the validation target, the rest is training input, so nothing
that is ever evaluated is seen in training. Profiling follows PeterRec's protocol: users
80/5/15, seeded; stratified by label so that small classes appear in every part.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.sequences import (
    HELD_OUT_TARGETS,
    group_bounds,
    lengths_to_offsets,
    list_values_offsets,
    positions_from_end,
    positions_from_start,
    require_columns,
    to_list_series,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# A user needs one training item besides the two held-out targets.
MIN_LOO_LENGTH = HELD_OUT_TARGETS + 1
_RATIO_TOLERANCE = 1e-6


def next_item_split(sequences: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``train`` = items[:-2], ``valid_target`` = items[-2], ``test_target`` = items[-1].

    Users with fewer than three items cannot give all three parts; they are dropped and
    their number is returned beside the table.
    """
    require_columns(sequences, ("user_id", "items"), "sequences")
    values, offsets = list_values_offsets(sequences["items"])
    lengths = np.diff(offsets)
    kept_users = lengths >= MIN_LOO_LENGTH
    starts, lengths = offsets[:-1][kept_users], lengths[kept_users]
    ends = starts + lengths
    rows = np.repeat(kept_users, np.diff(offsets))
    kept_values = values[rows]
    local_starts = lengths_to_offsets(lengths)[:-1]
    is_train = positions_from_end(local_starts, lengths) >= HELD_OUT_TARGETS
    table = pd.DataFrame(
        {
            "user_id": sequences["user_id"].to_numpy(dtype=np.int64)[kept_users],
            "train": to_list_series(
                kept_values[is_train], lengths_to_offsets(lengths - HELD_OUT_TARGETS)
            ),
            "valid_target": values[ends - 2].astype(np.int32),
            "test_target": values[ends - 1].astype(np.int32),
        }
    )
    return table, int((~kept_users).sum())


def check_ratios(ratios: Mapping[str, float], parameter: str) -> np.ndarray:
    """``{train, valid, test}`` fractions as an array, or a DataError saying what is wrong."""
    if not isinstance(ratios, Mapping) or set(ratios) != set(SPLITS):
        raise DataError(
            f"got {ratios!r}",
            parameter=parameter,
            expected="a mapping with exactly the keys train, valid, test",
        )
    values = np.array([ratios[name] for name in SPLITS], dtype=float)
    if (values < 0).any() or values[0] <= 0 or abs(values.sum() - 1.0) > _RATIO_TOLERANCE:
        raise DataError(
            f"ratios {dict(zip(SPLITS, values.tolist(), strict=True))} sum to {values.sum():g}",
            parameter=parameter,
            expected="non-negative fractions summing to 1, train > 0",
        )
    return values


def assign_splits(
    n: int, ratios: np.ndarray, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """Split code (0 train, 1 valid, 2 test) per element, proportional within each stratum.

    Each stratum is shuffled and cut at rounded cumulative ratios, so every class gets its
    exact share (to rounding) instead of a share that is right only on average.
    """
    groups = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    order = np.lexsort((rng.random(n), groups))
    starts, sizes = group_bounds(groups[order])
    rank = positions_from_start(starts, sizes)
    size = np.repeat(sizes, sizes)
    cuts = np.cumsum(ratios)[:2]
    train_end = np.rint(size * cuts[0])
    valid_end = np.rint(size * cuts[1])
    codes_sorted = (rank >= train_end).astype(np.int8) + (rank >= valid_end).astype(np.int8)
    codes = np.empty(n, dtype=np.int8)
    codes[order] = codes_sorted
    return codes


def check_fold(folds: int, fold: int) -> None:
    """``sequences.profiling.folds`` / ``fold``: a whole number of folds, a fold among them."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise DataError(
            f"folds = {folds!r} is not usable",
            parameter="sequences.profiling.folds",
            expected="a whole number >= 1 (1 = the single ratio split)",
        )
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise DataError(
            f"fold = {fold!r} is not one of the {folds} folds",
            parameter="sequences.profiling.fold",
            expected=f"a whole number in 0..{folds - 1}",
        )


def fold_splits(
    n: int,
    folds: int,
    fold: int,
    ratios: np.ndarray,
    rng: np.random.Generator,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Split codes (0 train, 1 valid, 2 test) with fold ``fold`` of ``folds`` as the test.

    Folds are dealt round-robin within each stratum after a seeded shuffle, so each fold
    holds every class in proportion; the same seed gives the same folds for every ``fold``.
    """
    groups = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    order = np.lexsort((rng.random(n), groups))
    starts, sizes = group_bounds(groups[order])
    assigned = np.empty(n, dtype=np.int64)
    assigned[order] = positions_from_start(starts, sizes) % folds
    codes = np.full(n, 2, dtype=np.int8)
    rest = np.flatnonzero(assigned != fold)
    share = ratios[1] / (ratios[0] + ratios[1])
    inner = assign_splits(
        len(rest),
        np.array([1.0 - share, share, 0.0]),
        rng,
        None if strata is None else groups[rest],
    )
    codes[rest] = inner
    return codes


def profile_split(
    sequences: pd.DataFrame,
    users: pd.DataFrame,
    tasks: Mapping[str, Mapping[str, Any]],
    ratios: Mapping[str, float],
    seed: int,
    stratify_min_users: int,
    dataset: str,
    folds: int = 1,
    fold: int = 0,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One row per (task, labelled user): ``user_id, items, task, label, split``.

    ``folds`` > 1: k-fold over users, ``fold`` is tested (every user is tested in exactly one
    fold, so k runs give a figure over all users, not over one test share); of the other
    users, ``ratios.valid / (ratios.train + ratios.valid)`` validate and the rest train.
    ``ratios.test`` is then unused. ``folds`` = 1 is the single ratio split.

    ``tasks`` maps a task name to ``{column: <users column>, bins: [edges] (optional)}``.
    Bins are right-open bracket edges; with ``[18, 25, 35, 45, 50, 56]`` raw ages (ML-100K)
    and ML-1M's age codes (1, 18, 25, ...) fall into the same seven brackets. Tasks whose
    column the users table lacks are skipped with a log line, never an error: some
    datasets simply have no user attributes.
    """
    fractions = check_ratios(ratios, "sequences.profiling.ratios")
    check_fold(folds, fold)
    require_columns(sequences, ("user_id", "items"), "sequences")
    require_columns(users, ("user_id",), "users")
    wanted = {name: _column_of(name, spec) for name, spec in tasks.items()}
    present = {name: column for name, column in wanted.items() if column in users.columns}
    if not present:
        logger.info(
            "profiling skipped: %s has no user attributes (%s)",
            dataset,
            ", ".join(wanted.values()) or "no task requested",
        )
        return empty_profile_split(), {}
    for name in wanted.keys() - present.keys():
        logger.warning(
            "profiling task '%s' skipped: %s users table has no column '%s'",
            name,
            dataset,
            wanted[name],
        )
    position = pd.Index(users["user_id"].to_numpy(dtype=np.int64)).get_indexer(
        sequences["user_id"].to_numpy(dtype=np.int64)
    )
    parts, classes = [], {}
    for name, column in present.items():
        raw = users[column].to_numpy()[np.maximum(position, 0)]
        labelled = (position >= 0) & ~pd.isna(raw)
        codes, names = _labels(raw[labelled], tasks[name].get("bins"), name, column)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        counts = np.bincount(codes, minlength=len(names))
        stratified = len(names) > 0 and counts.min() >= stratify_min_users
        if not stratified:
            logger.warning(
                "profiling task '%s': smallest class has %d users (< %d), split is plain random",
                name,
                int(counts.min()) if len(counts) else 0,
                stratify_min_users,
            )
        strata = codes if stratified else None
        if folds > 1:
            split = fold_splits(len(codes), folds, fold, fractions, rng, strata)
        else:
            split = assign_splits(len(codes), fractions, rng, strata)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": sequences["user_id"].to_numpy(dtype=np.int64)[labelled],
                    "items": sequences["items"][labelled].reset_index(drop=True),
                    "task": name,
                    "label": codes.astype(np.int64),
                    "split": np.array(SPLITS, dtype=object)[split],
                }
            )
        )
        classes[name] = names
    return pd.concat(parts, ignore_index=True), classes


def empty_profile_split() -> pd.DataFrame:
    """The profile table with its columns and types but no rows (a dataset without labels)."""
    return pd.DataFrame(
        {
            "user_id": np.empty(0, dtype=np.int64),
            "items": to_list_series(np.empty(0, dtype=np.int32), np.zeros(1, dtype=np.int64)),
            "task": np.empty(0, dtype=object),
            "label": np.empty(0, dtype=np.int64),
            "split": np.empty(0, dtype=object),
        }
    )


def _column_of(task: str, spec: Mapping[str, Any]) -> str:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("column"), str):
        raise DataError(
            f"task spec {spec!r} names no users column",
            parameter=f"sequences.profiling.tasks.{task}",
            expected="{column: <users column>, bins: [edges] (optional)}",
        )
    return spec["column"]


def _labels(
    raw: np.ndarray, bins: list[float] | None, task: str, column: str
) -> tuple[np.ndarray, list[str]]:
    """Dense class codes (0..C-1, classes present only) and their names."""
    if bins is None:
        codes, uniques = pd.factorize(raw, sort=True)
        return codes.astype(np.int64), [str(value) for value in uniques]
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or len(edges) == 0 or (np.diff(edges) <= 0).any():
        raise DataError(
            f"bins {bins!r} are not usable",
            parameter=f"sequences.profiling.tasks.{task}.bins",
            expected="a non-empty, strictly increasing list of bracket edges",
        )
    numbers = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(numbers))
    if len(bad):
        raise DataError(
            f"value {raw[bad[0]]!r} is not a number, so it cannot be put in an age bracket",
            column=column,
            expected="numeric values for a task with bins",
        )
    brackets = np.searchsorted(edges, numbers, side="right")
    present, codes = np.unique(brackets, return_inverse=True)
    names = _bracket_names(edges)
    return codes.astype(np.int64), [names[index] for index in present]


def _bracket_names(edges: np.ndarray) -> list[str]:
    """``<18, 18-24, ..., 56+`` for integer edges, ``[a, b)`` otherwise."""
    integral = all(math.isclose(edge, round(edge)) for edge in edges)

    def fmt(value: float) -> str:
        return str(int(round(value))) if integral else f"{value:g}"

    middle = [
        f"{fmt(low)}-{fmt(high - 1)}" if integral else f"[{fmt(low)}, {fmt(high)})"
        for low, high in zip(edges[:-1], edges[1:], strict=True)
    ]
    return [f"<{fmt(edges[0])}", *middle, f"{fmt(edges[-1])}+"]
