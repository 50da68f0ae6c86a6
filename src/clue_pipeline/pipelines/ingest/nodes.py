"""Thin nodes of the ingest pipeline: parameters in, contract tables out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from clue_pipeline.data.download import DownloadSpec, ensure_downloaded
from clue_pipeline.data.readers import READERS, known_formats, read_dataset
from clue_pipeline.data.validation import (
    check_contract,
    check_not_empty,
    count_missing,
    drop_duplicate_events,
    parse_ingest_params,
)

logger = logging.getLogger(__name__)


def locate_raw_dataset(params: dict[str, Any]) -> str:
    """The raw folder or file to read; fetched first when ``ingest.download`` is set.

    With a download, ``ingest.path`` is the cache: it is filled once and read from then on.
    """
    options = parse_ingest_params(params, known_formats())
    download = params.get("download")
    if download:
        required = READERS[options.format].required_files
        cache = options.path if required else options.path.parent
        ensure_downloaded(
            DownloadSpec.from_params(download), cache, required or (options.path.name,)
        )
    return str(options.path)


def read_raw_dataset(
    raw_path: str, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Parse the raw files into the three tables; malformed input stops the run here."""
    options = parse_ingest_params({**params, "path": raw_path}, known_formats())
    raw = read_dataset(options)
    logger.info(
        "read %s (%s): %d events, %d user rows, %d item rows",
        Path(raw_path).name,
        options.format,
        len(raw.interactions),
        len(raw.users),
        len(raw.items),
    )
    return raw.interactions, raw.users, raw.items


def validate_dataset(
    raw_interactions: pd.DataFrame,
    raw_users: pd.DataFrame,
    raw_items: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Resolve duplicate events and check the contract before anything is written."""
    options = parse_ingest_params(params, known_formats())
    source = str(options.path)
    interactions = drop_duplicate_events(
        raw_interactions, options.duplicates, options.duplicate_key, source
    )
    check_not_empty(interactions, "interactions", source)
    check_not_empty(raw_users, "users", source)
    check_contract(interactions, raw_users, raw_items)
    for column, table, what in (("user_id", raw_users, "users"), ("item_id", raw_items, "items")):
        if missing := count_missing(interactions[column], table, column):
            logger.warning(
                "%s: %d %s of the interactions have no row in %s", source, missing, column, what
            )
    logger.info(
        "ingested %s: %d interactions, %d users, %d items (%d with metadata)",
        source,
        len(interactions),
        interactions["user_id"].nunique(),
        interactions["item_id"].nunique(),
        len(raw_items),
    )
    return interactions, raw_users, raw_items
