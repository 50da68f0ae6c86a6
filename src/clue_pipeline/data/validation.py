"""Checks on ingest parameters and on the tables the readers produce.

Every check raises :class:`DataError` before anything is written, naming the parameter,
file, line/row or column at fault and the form that was expected.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clue_pipeline.data.errors import DataError

logger = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("keep_last", "keep_first", "error")
ML1M_PARTIAL_SCOPES = ("timed", "all_users")
PETERREC_TARGETS = ("items", "label")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("rating", "domain")


@dataclass(frozen=True)
class TableFile:
    """One user-supplied file and how its columns map onto the contract's names."""

    path: Path
    columns: Mapping[str, str]  # contract name -> column name in the file
    sep: str = ","
    encoding: str = "utf-8"


@dataclass(frozen=True)
class IngestOptions:
    """The validated ``ingest`` parameters that the readers consume."""

    format: str
    path: Path
    duplicates: str = "keep_last"
    duplicate_key: tuple[str, ...] = INTERACTION_COLUMNS
    ml1m_partial_scope: str = "timed"
    peterrec_targets: str = "items"
    peterrec_pad_token: str = "0"
    generic_interactions: TableFile | None = None
    generic_users: TableFile | None = None
    generic_items: TableFile | None = None
    string_ids: bool = False


def parse_ingest_params(params: Mapping[str, Any], known_formats: Sequence[str]) -> IngestOptions:
    """Turn the ``ingest`` parameter block into :class:`IngestOptions`, or say what is wrong."""
    if not isinstance(params, Mapping):
        raise DataError(
            f"got {type(params).__name__}", parameter="ingest", expected="a mapping of options"
        )
    fmt = _required(params, "format")
    if fmt not in known_formats:
        raise DataError(
            f"unknown format {fmt!r}",
            parameter="ingest.format",
            expected=f"one of {', '.join(sorted(known_formats))}",
        )
    path = Path(str(_required(params, "path")))
    duplicates = _choice(params, "duplicates", DUPLICATE_POLICIES, "keep_last")
    key = tuple(params.get("duplicate_key") or INTERACTION_COLUMNS)
    unknown_key = [k for k in key if k not in (*INTERACTION_COLUMNS, "rating", "domain")]
    if unknown_key or not {"user_id", "item_id"} <= set(key):
        raise DataError(
            f"{list(key)!r} is not a usable event key",
            parameter="ingest.duplicate_key",
            expected="a list containing user_id and item_id, optionally timestamp, rating, domain",
        )
    partial = params.get("ml1m_partial") or {}
    peterrec = params.get("peterrec") or {}
    scope = _choice(partial, "scope", ML1M_PARTIAL_SCOPES, "timed", prefix="ingest.ml1m_partial")
    targets = _choice(peterrec, "targets", PETERREC_TARGETS, "items", prefix="ingest.peterrec")
    pad = str(peterrec.get("pad_token", "0"))
    generic = params.get("generic") or {}
    interactions = users = items = None
    string_ids = False
    if fmt == "generic":
        interactions = _table_file(
            {**generic, "path": str(path)}, "ingest.generic", ("user_id", "item_id")
        )
        users = _optional_table_file(generic.get("users"), "ingest.generic.users", ("user_id",))
        items = _optional_table_file(generic.get("items"), "ingest.generic.items", ("item_id",))
        string_ids = generic.get("string_ids", False)
        if not isinstance(string_ids, bool):
            raise DataError(
                f"{string_ids!r} is not true or false",
                parameter="ingest.generic.string_ids",
                expected="false (ids are integers) or true (ids are text, each its own id)",
            )
    return IngestOptions(
        format=fmt,
        path=path,
        duplicates=duplicates,
        duplicate_key=key,
        ml1m_partial_scope=scope,
        peterrec_targets=targets,
        peterrec_pad_token=pad,
        generic_interactions=interactions,
        generic_users=users,
        generic_items=items,
        string_ids=string_ids,
    )


def _required(params: Mapping[str, Any], name: str, prefix: str = "ingest") -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise DataError("is missing", parameter=f"{prefix}.{name}", expected="a value")
    return value


def _choice(
    params: Mapping[str, Any], name: str, choices: Sequence[str], default: str, prefix="ingest"
) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise DataError(
            f"{value!r} is not a known setting",
            parameter=f"{prefix}.{name}",
            expected=f"one of {', '.join(choices)}",
        )
    return value


def _optional_table_file(
    block: Mapping[str, Any] | None, prefix: str, needed: Sequence[str]
) -> TableFile | None:
    if not block:
        return None
    if not isinstance(block, Mapping):
        raise DataError("is not a mapping", parameter=prefix, expected="{path: ..., columns: ...}")
    return _table_file(block, prefix, needed)


def _table_file(block: Mapping[str, Any], prefix: str, needed: Sequence[str]) -> TableFile:
    path = Path(str(_required(block, "path", prefix)))
    columns = block.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise DataError(
            f"got {type(columns).__name__}",
            parameter=f"{prefix}.columns",
            expected="a mapping {contract name: column in the file}",
        )
    missing = [name for name in needed if not columns.get(name)]
    if missing:
        raise DataError(
            f"no column given for {', '.join(missing)}",
            parameter=f"{prefix}.columns",
            expected=f"a mapping with keys {', '.join(needed)}",
        )
    sep = str(block.get("sep", ","))
    if not sep or "\n" in sep or '"' in sep:
        raise DataError(
            f"{sep!r} cannot separate fields",
            parameter=f"{prefix}.sep",
            expected="one or more characters other than newline and quote",
        )
    encoding = str(block.get("encoding", "utf-8"))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(
            f"{encoding!r} is not a text encoding Python knows",
            parameter=f"{prefix}.encoding",
            expected="an encoding name such as utf-8, latin-1 or cp1252",
        ) from None
    return TableFile(
        path=path,
        columns={str(k): str(v) for k, v in columns.items() if v is not None},
        sep=sep,
        encoding=encoding,
    )


def check_values(
    table: pa.Table,
    columns: Sequence[str],
    locate: Callable[[int], dict[str, Any]],
    *,
    non_negative: Sequence[str] = (),
) -> None:
    """Reject nulls/NaNs/infinities in ``columns`` and negative values in ``non_negative``.

    ``locate`` turns a 0-based row into the location keywords of :class:`DataError`
    (a text line or a parquet row); it runs only when something is wrong, so the happy path
    costs one null count and one minimum per column.
    """
    for name in columns:
        col = table.column(name)
        bad = pc.is_null(col, nan_is_null=True)
        if col.null_count or (pa.types.is_floating(col.type) and pc.any(bad).as_py()):
            row = pc.index(bad, True).as_py()
            raise DataError("missing value", column=name, expected="a number", **locate(row))
        if pa.types.is_floating(col.type) and pc.any(pc.is_inf(col)).as_py():
            row = pc.index(pc.is_inf(col), True).as_py()
            raise DataError(
                f"infinite value {col[row].as_py()}",
                column=name,
                expected="a finite number",
                **locate(row),
            )
        if name in non_negative and len(col) and pc.min(col).as_py() < 0:
            row = pc.index(pc.less(col, 0), True).as_py()
            value = col[row].as_py()
            raise DataError(
                f"negative value {value}",
                column=name,
                expected="a non-negative integer",
                **locate(row),
            )


def drop_duplicate_events(
    interactions: pd.DataFrame, policy: str, key: Sequence[str], source: str
) -> pd.DataFrame:
    """Apply the duplicate policy; ``keep_*`` log how many events were dropped.

    The same event twice (same key, by default user, item and time) would count twice in a
    sequence and leak between train and test, so it is resolved here once for all pipelines.
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(
            f"{policy!r} is not a known setting",
            parameter="ingest.duplicates",
            expected=f"one of {', '.join(DUPLICATE_POLICIES)}",
        )
    key = list(key)
    keep = "first" if policy == "keep_first" else "last"
    dup = duplicate_mask(interactions, key, keep)
    dropped = int(dup.sum())
    if not dropped:
        return interactions
    if policy == "error":
        later = int(np.flatnonzero(duplicate_mask(interactions, key, "first"))[0])
        values = {k: interactions[k].iat[later] for k in key}
        same = np.logical_and.reduce([interactions[k].to_numpy() == v for k, v in values.items()])
        earlier = int(np.flatnonzero(same)[0])
        desc = ", ".join(f"{k}={values[k]}" for k in key)
        raise DataError(
            f"duplicate event {desc} at events {earlier + 1} and {later + 1} (file order); "
            f"{dropped} duplicate(s) in all",
            file=source,
            parameter="ingest.duplicates",
            expected="each event once, or duplicates: keep_last|keep_first",
        )
    logger.info("%s: dropped %d duplicate event(s) (%s on %s)", source, dropped, policy, key)
    return interactions.loc[~dup].reset_index(drop=True)


def duplicate_mask(frame: pd.DataFrame, key: Sequence[str], keep: str) -> np.ndarray:
    """``frame.duplicated(subset=key, keep=keep)``, fast when (as usual) nothing repeats.

    Rows are first reduced to a 64-bit digest and sorted (a vectorised sort is far cheaper
    than a hash table of 25M multi-column rows); only rows whose digest repeats go through
    the exact pandas comparison, so digest collisions cost time, never correctness.
    """
    digest = row_digest(frame, key)
    ordered = np.sort(digest)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    mask = np.zeros(len(frame), dtype=bool)
    if repeated.size == 0:
        return mask
    candidates = np.flatnonzero(np.isin(digest, repeated))
    exact = frame.iloc[candidates][list(key)].duplicated(keep=keep).to_numpy()
    mask[candidates[exact]] = True
    return mask


_DIGEST_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads bits


def row_digest(frame: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
    """A uint64 per row, equal for equal ``key`` values (a mix of the columns' bits)."""
    digest = np.zeros(len(frame), dtype=np.uint64)
    for name in key:
        column = frame[name].to_numpy()
        if column.dtype.kind == "f" and column.dtype.itemsize == 8:
            bits = (column + 0.0).view(np.uint64)  # -0.0 and 0.0 are one value
        elif column.dtype.kind in "iu" and column.dtype.itemsize == 8:
            bits = column.view(np.uint64)
        elif column.dtype.kind in "iub":
            bits = column.astype(np.uint64)
        else:
            bits = pd.util.hash_array(np.asarray(column, dtype=object))
        digest ^= bits
        digest *= _DIGEST_MULTIPLIER
        digest ^= digest >> np.uint64(29)
    return digest


def check_not_empty(table: pd.DataFrame, what: str, source: str) -> None:
    if table.empty:
        raise DataError(
            f"no {what} left after reading", file=source, expected=f"at least one row of {what}"
        )


def check_contract(interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> None:
    """The dtypes promised to every later pipeline (docs/architecture.md, Tables)."""
    for name in INTERACTION_COLUMNS:
        _expect_dtype(interactions, "interactions", name, "int64")
    if "rating" in interactions:
        _expect_dtype(interactions, "interactions", "rating", "float64")
    _expect_dtype(users, "users", "user_id", "int64")
    _expect_dtype(items, "items", "item_id", "int64")


def _expect_dtype(table: pd.DataFrame, what: str, name: str, dtype: str) -> None:
    if name not in table.columns:
        raise DataError(f"{what} table lacks the column", column=name, expected=f"{dtype} column")
    if str(table[name].dtype) != dtype:
        raise DataError(f"{what} column has dtype {table[name].dtype}", column=name, expected=dtype)


def count_missing(keys: pd.Series, table: pd.DataFrame, column: str) -> int:
    """How many distinct ``keys`` have no row in ``table`` (e.g. users without a profile)."""
    distinct = pd.unique(keys.to_numpy())
    return int((~np.isin(distinct, table[column].to_numpy())).sum())
