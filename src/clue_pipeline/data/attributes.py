"""Item attributes for attribute-aware pre-training (S3-Rec): S3-Rec JSON files, MovieLens genres.

Both sources become one long table ``(item_id, attribute)`` of original item ids and attribute
names, then ``(token, attribute)`` codes against the dataset's item index. Bad input stops the
run here, naming the file (or parameter) and what was expected.

- ``item2attributes``: the ``<Dataset>_item2attributes.json`` files published beside S3-Rec's
  Beauty, Sports and LastFM sequences: ``{"<item id>": [<attribute id>, ...], ...}``.
- ``genres``: the items table's ``genres`` column (``"Action|Comedy"``), as every MovieLens
  reader writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clue_pipeline.data.errors import DataError

SOURCES = ("item2attributes", "genres", "none")


def load_attributes(params: dict[str, Any], items: pd.DataFrame) -> pd.DataFrame:
    """``(item_id, attribute)`` pairs from the source ``params`` names (see the module doc)."""
    source = params.get("source")
    if source == "item2attributes":
        path = params.get("path")
        if not path:
            raise DataError(
                "no file given for source 'item2attributes'",
                parameter="attributes.path",
                expected="the path of an S3-Rec <Dataset>_item2attributes.json file",
            )
        return read_item2attributes(path)
    if source == "genres":
        return genre_attributes(items)
    if source == "none":
        return pd.DataFrame({"item_id": np.empty(0, np.int64), "attribute": np.empty(0, str)})
    raise DataError(
        f"unknown attribute source {source!r}",
        parameter="attributes.source",
        expected=f"one of {list(SOURCES)}",
    )


def read_item2attributes(path: str | Path) -> pd.DataFrame:
    """An S3-Rec ``item2attributes.json`` as ``(item_id, attribute)`` pairs (int64, str)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "file not found", file=path, expected="an S3-Rec <Dataset>_item2attributes.json file"
        )
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"not valid JSON ({error})", file=path) from None
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(
            f"found a {type(mapping).__name__}{'' if mapping else ' that is empty'}",
            file=path,
            expected='a non-empty object {"<item id>": [<attribute id>, ...]}',
        )
    item_ids, attributes = [], []
    for key, values in mapping.items():
        if not key.strip().isdigit():
            raise DataError(f"item id {key!r} is not a non-negative integer", file=path)
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise DataError(
                f"item {key}: attributes {values!r}", file=path, expected="a list of integers"
            )
        item_ids += [int(key)] * len(values)
        attributes += [str(v) for v in values]
    return pd.DataFrame({"item_id": np.array(item_ids, np.int64), "attribute": attributes})


def genre_attributes(items: pd.DataFrame) -> pd.DataFrame:
    """MovieLens genres (``"A|B"``) as ``(item_id, attribute)`` pairs; items without none."""
    if "genres" not in items.columns:
        raise DataError(
            f"the items table has no 'genres' column (columns: {list(items.columns)})",
            parameter="attributes.source",
            expected="'item2attributes' with a file for data without genres",
        )
    split = items[["item_id", "genres"]].assign(attribute=items["genres"].fillna("").str.split("|"))
    pairs = split.explode("attribute")
    pairs = pairs[pairs["attribute"].astype(str).str.len() > 0]
    return pairs[["item_id", "attribute"]].astype({"item_id": "int64", "attribute": "str"})


def attribute_codes(pairs: pd.DataFrame, item_index: pd.DataFrame) -> pd.DataFrame:
    """``(token, attribute)`` int64 codes of the indexed items; attribute codes ``0..A-1``.

    Attributes of items outside the index (filtered out by the sequences pipeline) are
    dropped, and so are attributes no indexed item has.
    """
    joined = pairs.merge(item_index[["item_id", "token"]], on="item_id", how="inner")
    if pairs.empty:
        return pd.DataFrame({"token": np.empty(0, np.int64), "attribute": np.empty(0, np.int64)})
    if joined.empty:
        raise DataError(
            "no item of the item index has an attribute: the attribute file and the "
            "interactions do not share item ids",
            parameter="attributes",
        )
    codes, _ = pd.factorize(joined["attribute"], sort=True)
    table = pd.DataFrame({"token": joined["token"].astype(np.int64), "attribute": codes})
    return table.drop_duplicates().sort_values(["token", "attribute"], ignore_index=True)
