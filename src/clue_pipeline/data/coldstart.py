"""Cold-start instances from one interaction log split into a source and a target domain.

The paper's ColdRec data pairs a user's long history on one platform (source) with at most
``g`` interactions on another (target). From MovieLens the same shape is built by genre: an
item whose genres contain ``target_genre`` belongs to the target domain, every other item to
the source. For each user the source sequence is the history outside the target domain
(time order, the most recent ``max_len``), and the instances are the user's FIRST ``g``
target-domain items, each one (user, target item) pair, i.e. how the user entered the new
domain. Data that already carries a ``domain`` column (PeterRec's format) is split by it.
Users are split 80/5/15 as a whole, so no user's instances straddle train and test.

The candidates ranked for a target (``sequences.coldstart.candidates``): ``labels`` = the
target items that some user's first ``g`` items name, test users' included (the paper's and
PeterRec's class set); ``catalogue`` = every target-domain item (by genre, the items table's;
by domain, every item the log has in that domain), the label classes first with the same
numbers, so the two differ only in the items no user starts with. ``labels`` makes the ranking
easier, and its MRR / HR higher than a whole-catalogue ranking gives.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.sequences import (
    check_int,
    group_bounds,
    lengths_to_offsets,
    positions_from_end,
    positions_from_start,
    require_columns,
    to_list_series,
    tokenize,
)
from clue_pipeline.data.splits import SPLITS, assign_splits, check_ratios

logger = logging.getLogger(__name__)

# The paper's ColdRec-2 allows up to five target interactions per user.
MAX_TARGETS_LIMIT = 5
GENRE_SEPARATOR = "|"
_RATIOS = "sequences.coldstart.ratios"
CANDIDATE_SETS = ("labels", "catalogue")


@dataclass(frozen=True)
class ColdStartSettings:
    target_genre: str
    target_domain: str
    max_targets: int
    min_source_items: int
    max_len: int
    ratios: Mapping[str, float]
    seed: int
    candidates: str = "labels"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ColdStartSettings:
        """From the `sequences` parameter block (its `coldstart` part, `max_len`, `seed`)."""
        coldstart = params["coldstart"]
        return cls(
            target_genre=coldstart["target_genre"],
            target_domain=coldstart["target_domain"],
            max_targets=coldstart["max_targets"],
            min_source_items=coldstart["min_source_items"],
            max_len=params["max_len"],
            ratios=coldstart["ratios"],
            seed=params["seed"],
            candidates=coldstart.get("candidates", "labels"),
        )


@dataclass(frozen=True)
class ColdStartData:
    """The three cold-start tables plus the counts the node logs."""

    source: pd.DataFrame
    targets: pd.DataFrame
    target_index: pd.DataFrame
    users_total: int
    dropped_without_target: int
    dropped_short_source: int
    target_rule: str = ""
    skipped_reason: str | None = None


def build_coldstart(
    ordered: pd.DataFrame,
    items: pd.DataFrame,
    item_index: pd.DataFrame,
    settings: ColdStartSettings,
    dataset: str,
) -> ColdStartData:
    """Source sequences, target instances and the target class index of every usable user.

    ``ordered`` is the filtered interaction log in (user, time) order, the same rows that
    ``sequences`` is built from, so source tokens share ``item_index``.
    """
    _check_settings(settings)
    require_columns(ordered, ("user_id", "item_id"), "interactions")
    in_target = _target_domain_mask(ordered, items, settings, dataset)
    if isinstance(in_target, str):
        logger.info("cold-start skipped: %s", in_target)
        return ColdStartData(*_empty_tables(), 0, 0, 0, skipped_reason=in_target)
    rule = (
        f"domain == {settings.target_domain!r}"
        if "domain" in ordered.columns
        else f"genre {settings.target_genre!r}"
    )
    users = ordered["user_id"].to_numpy(dtype=np.int64)
    starts, lengths = group_bounds(users)
    user_of_row = np.repeat(np.arange(len(starts)), lengths)
    target_counts = np.bincount(user_of_row[in_target], minlength=len(starts))
    source_counts = lengths - target_counts
    has_target = target_counts > 0
    kept = has_target & (source_counts >= settings.min_source_items)
    if not kept.any():
        raise DataError(
            f"no user of {dataset} has both a target-domain item and at least "
            f"{settings.min_source_items} source items ({int(has_target.sum())} of "
            f"{len(starts)} users have a target-domain item by {rule}; "
            f"min_source_items={settings.min_source_items})",
            parameter="sequences.coldstart",
            expected="a target domain and source threshold that some users reach",
        )
    source = _source_sequences(ordered, item_index, users, ~in_target & kept[user_of_row], settings)
    catalogue = _target_catalogue(ordered, items, in_target, settings)
    targets, target_index = _target_instances(
        ordered, in_target & kept[user_of_row], settings, catalogue
    )
    return ColdStartData(
        source=source,
        targets=targets,
        target_index=target_index,
        users_total=len(starts),
        dropped_without_target=int((~has_target).sum()),
        dropped_short_source=int((has_target & ~kept).sum()),
        target_rule=rule,
    )


def target_item_ids(items: pd.DataFrame, target_genre: str) -> np.ndarray:
    """Original ids of the items whose ``|``-separated genres contain ``target_genre``.

    The genre must match a whole genre name ("Comedy" does not select "Dark Comedy"); an
    unknown genre is an error listing the genres the items table has.
    """
    items = items.reset_index(drop=True)
    genres = items["genres"].fillna("").astype(str).str.split(GENRE_SEPARATOR).explode()
    known = sorted(set(genres.unique()) - {""})
    if target_genre not in known:
        raise DataError(
            f"target genre {target_genre!r} is not a genre of the items table",
            parameter="sequences.coldstart.target_genre",
            expected=f"one of {known}",
        )
    rows = np.unique(genres.index[genres.to_numpy() == target_genre])
    return items["item_id"].to_numpy(dtype=np.int64)[rows]


def _target_domain_mask(
    ordered: pd.DataFrame, items: pd.DataFrame, settings: ColdStartSettings, dataset: str
) -> np.ndarray | str:
    """Per interaction, whether it is in the target domain; a reason string when unknowable."""
    if "domain" in ordered.columns:
        domains = ordered["domain"].astype(str).to_numpy()
        if settings.target_domain not in set(np.unique(domains)):
            raise DataError(
                f"no interaction has domain {settings.target_domain!r}",
                column="domain",
                expected=f"one of {sorted(np.unique(domains).tolist())}",
            )
        return domains == settings.target_domain
    if "genres" not in items.columns or items["genres"].isna().all():
        return f"{dataset} has neither a 'domain' column in interactions nor item genres"
    target_ids = target_item_ids(items, settings.target_genre)
    return np.isin(ordered["item_id"].to_numpy(dtype=np.int64), target_ids)


def _source_sequences(
    ordered: pd.DataFrame,
    item_index: pd.DataFrame,
    users: np.ndarray,
    rows: np.ndarray,
    settings: ColdStartSettings,
) -> pd.DataFrame:
    source_users = users[rows]
    starts, lengths = group_bounds(source_users)
    recent = positions_from_end(starts, lengths) < settings.max_len
    tokens = tokenize(ordered["item_id"].to_numpy(dtype=np.int64)[rows][recent], item_index)
    return pd.DataFrame(
        {
            "user_id": source_users[starts],
            "items": to_list_series(
                tokens, lengths_to_offsets(np.minimum(lengths, settings.max_len))
            ),
        }
    )


def _target_catalogue(
    ordered: pd.DataFrame, items: pd.DataFrame, in_target: np.ndarray, settings: ColdStartSettings
) -> np.ndarray | None:
    """Every target-domain item id (``candidates: catalogue``), or None for the label set."""
    if settings.candidates == "labels":
        return None
    if "domain" in ordered.columns:
        return np.unique(ordered["item_id"].to_numpy(dtype=np.int64)[in_target])
    return np.unique(target_item_ids(items, settings.target_genre))


def _target_instances(
    ordered: pd.DataFrame,
    rows: np.ndarray,
    settings: ColdStartSettings,
    catalogue: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first ``g`` target items per user as classes, and the class index.

    Classes are the target items that occur as an instance, numbered by frequency (ties by
    id), so the softmax has no class that no user ever selects; with a ``catalogue`` its
    other items follow, by id.
    """
    target_users = ordered["user_id"].to_numpy(dtype=np.int64)[rows]
    target_items = ordered["item_id"].to_numpy(dtype=np.int64)[rows]
    starts, lengths = group_bounds(target_users)
    first = positions_from_start(starts, lengths) < settings.max_targets
    instance_users, instance_items = target_users[first], target_items[first]
    codes, uniques = pd.factorize(instance_items)
    ranking = np.lexsort((uniques, -np.bincount(codes, minlength=len(uniques))))
    class_of_code = np.empty(len(uniques), dtype=np.int32)
    class_of_code[ranking] = np.arange(len(uniques), dtype=np.int32)
    user_ids = target_users[starts]
    rng = np.random.default_rng([settings.seed, zlib.crc32(b"coldstart")])
    user_split = assign_splits(len(user_ids), check_ratios(settings.ratios, _RATIOS), rng)
    instance_starts, instance_counts = group_bounds(instance_users)
    split = np.repeat(user_split, instance_counts)
    targets = pd.DataFrame(
        {
            "user_id": instance_users,
            "target": class_of_code[codes],
            "split": np.array(SPLITS, dtype=object)[split],
        }
    )
    classes = uniques[ranking].astype(np.int64)
    if catalogue is not None:
        classes = np.concatenate([classes, np.setdiff1d(catalogue, classes)])
    target_index = pd.DataFrame(
        {"item_id": classes, "target": np.arange(len(classes), dtype=np.int32)}
    )
    return targets, target_index


def _check_settings(settings: ColdStartSettings) -> None:
    check_int(settings.max_len, "sequences.max_len", minimum=1)
    check_int(settings.min_source_items, "sequences.coldstart.min_source_items", minimum=1)
    check_int(settings.max_targets, "sequences.coldstart.max_targets", minimum=1)
    if settings.max_targets > MAX_TARGETS_LIMIT:
        raise DataError(
            f"value {settings.max_targets} is outside the cold-start setting",
            parameter="sequences.coldstart.max_targets",
            expected=f"an integer g in 1..{MAX_TARGETS_LIMIT}",
        )
    check_ratios(settings.ratios, _RATIOS)
    if settings.candidates not in CANDIDATE_SETS:
        raise DataError(
            f"value {settings.candidates!r} is not a candidate set",
            parameter="sequences.coldstart.candidates",
            expected=f"one of {list(CANDIDATE_SETS)}",
        )


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    source = pd.DataFrame(
        {
            "user_id": np.empty(0, dtype=np.int64),
            "items": to_list_series(np.empty(0, dtype=np.int32), np.zeros(1, dtype=np.int64)),
        }
    )
    targets = pd.DataFrame(
        {
            "user_id": np.empty(0, dtype=np.int64),
            "target": np.empty(0, dtype=np.int32),
            "split": np.empty(0, dtype=object),
        }
    )
    index = pd.DataFrame(
        {"item_id": np.empty(0, dtype=np.int64), "target": np.empty(0, dtype=np.int32)}
    )
    return source, targets, index
