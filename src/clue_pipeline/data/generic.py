"""The generic format: any CSV or parquet event log, read so that it cannot go silently wrong.

Ids are integers written one way. ``7``, ``007`` and ``0007`` are one number but three ids
in the file's own terms, so an id with leading zeros (or any other text) is refused, unless
``ingest.generic.string_ids: true`` maps ids as text: each distinct text becomes its own
integer id (1.., in sorted text order) and the text is kept beside it in ``source_user_id``
/ ``source_item_id`` of the users and items tables. A timestamp column whose unit changes
(seconds beside milliseconds) would put events out of order and is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clue_pipeline.data.csv_diagnosis import INT64_DIGITS, INT64_MAX, line_of_row
from clue_pipeline.data.errors import DataError
from clue_pipeline.data.tables import (
    EVENT_TYPES,
    events_frame,
    is_parquet,
    read_mapped_table,
    require_file,
    sorted_unique,
)
from clue_pipeline.data.validation import IngestOptions, TableFile

SOURCE_ID = {"user_id": "source_user_id", "item_id": "source_item_id"}
_EPOCH_FLOOR = 10**8  # smaller timestamps are positions or day numbers, not epoch times
_UNIT_BOUNDS = (10**11, 10**14, 10**17)  # seconds below 1e11 (until year 5138), then ms, us
_UNIT_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_STRING_IDS_HINT = "ingest.generic.string_ids: true keeps each text its own id"

Locate = Callable[[int], dict[str, Any]]


def read_generic_frames(options: IngestOptions) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Interactions, users and items of ``ingest.generic``; every problem a :class:`DataError`."""
    spec = options.generic_interactions
    if spec is None:
        raise DataError("is missing", parameter="ingest.generic", expected="{columns: {...}}")
    unknown = sorted(set(spec.columns) - set(EVENT_TYPES))
    if unknown:
        raise DataError(
            f"unknown contract column(s) {', '.join(unknown)}",
            parameter="ingest.generic.columns",
            expected=f"keys among {', '.join(EVENT_TYPES)}",
        )
    string_ids = options.string_ids
    events = _read(spec, EVENT_TYPES, string_ids)
    if "timestamp" in events.column_names:
        check_timestamp_units(events["timestamp"], spec.columns["timestamp"], _locator(spec))
    users = items = None
    if options.generic_users is not None:
        users = (_read(options.generic_users, {"user_id": pa.int64()}, string_ids), "user_id")
    if options.generic_items is not None:
        types = {"item_id": pa.int64(), "title": pa.string(), "genres": pa.string()}
        items = (_read(options.generic_items, types, string_ids), "item_id")
    if string_ids:
        return _with_text_ids(events, users, items)
    interactions = events_frame(events)
    return (
        interactions,
        users[0].to_pandas() if users else _distinct(interactions, "user_id"),
        items[0].to_pandas() if items else _distinct(interactions, "item_id"),
    )


def check_timestamp_units(column: pa.ChunkedArray, name: str, locate: Locate) -> None:
    """Refuse a column whose epoch times change unit (seconds, then milliseconds).

    The unit of an epoch time shows in its size: seconds stay below 1e11 until the year
    5138, milliseconds since 1973 are above it. Values below 1e8 are not read as epoch times
    (positions, day numbers), so an ordinal "timestamp" column passes.
    """
    values = column.to_numpy()
    epoch = values >= _EPOCH_FLOOR
    if not epoch.any():
        return
    unit = np.searchsorted(_UNIT_BOUNDS, values, side="right")
    first = int(np.argmax(epoch))
    mixed = epoch & (unit != unit[first])
    if not mixed.any():
        return
    row = int(np.argmax(mixed))
    earlier = ", ".join(f"{k} {v}" for k, v in locate(first).items() if k in ("line", "row"))
    raise DataError(
        f"{values[row]} is in {_UNIT_NAMES[unit[row]]}, but {values[first]} ({earlier}) is in "
        f"{_UNIT_NAMES[unit[first]]}: mixed units would put events out of order",
        column=name,
        expected="one unit for the whole column (e.g. all seconds)",
        **locate(row),
    )


def integer_ids(column: pa.ChunkedArray, name: str, locate: Locate) -> pa.ChunkedArray:
    """Text ids to int64, refusing anything two spellings of which would merge by value."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return pc.cast(column, pa.int64())
    text = pc.utf8_trim_whitespace(column)
    ok = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]+$"), False)
    if not pc.all(ok).as_py():
        row = pc.index(ok, False).as_py()
        value = text[row].as_py()
        problem = f"{value!r} is not a non-negative integer" if value else "missing value"
        raise DataError(
            problem,
            column=name,
            expected=f"non-negative integer ids ({_STRING_IDS_HINT})",
            **locate(row),
        )
    zeros = pc.match_substring_regex(text, r"^0[0-9]")
    if pc.any(zeros).as_py():
        row = pc.index(zeros, True).as_py()
        value = text[row].as_py()
        raise DataError(
            f"{value!r} has leading zeros: as a number it is {int(value)}, and would merge with "
            f"every other spelling of {int(value)}",
            column=name,
            expected=f"integer ids without leading zeros ({_STRING_IDS_HINT})",
            **locate(row),
        )
    length = pc.utf8_length(text)
    huge = pc.or_(
        pc.greater(length, INT64_DIGITS),
        pc.and_(pc.equal(length, INT64_DIGITS), pc.greater(text, INT64_MAX)),
    )
    if pc.any(huge).as_py():
        row = pc.index(huge, True).as_py()
        raise DataError(
            f"{text[row].as_py()} is larger than a 64-bit integer",
            column=name,
            expected=f"integer ids up to {INT64_MAX} ({_STRING_IDS_HINT})",
            **locate(row),
        )
    return pc.cast(text, pa.int64())


def _read(spec: TableFile, types: Mapping[str, pa.DataType], string_ids: bool) -> pa.Table:
    """The file's table with its ids as int64, or as trimmed text when ``string_ids``."""
    require_file(spec.path)
    ids = [name for name in SOURCE_ID if name in spec.columns]
    text_types = {**types, **dict.fromkeys(ids, pa.string())}
    if is_parquet(spec.path) and not string_ids:
        # Integer and float parquet columns cannot spell an id two ways; read them as before.
        schema = pq.read_schema(spec.path)
        for name in ids:
            source = spec.columns[name]
            kinds = [t for n, t in zip(schema.names, schema.types, strict=True) if n == source]
            if kinds and (pa.types.is_integer(kinds[0]) or pa.types.is_floating(kinds[0])):
                text_types[name] = types[name]
    table = read_mapped_table(spec, text_types)
    locate = _locator(spec)
    for name in ids:
        index = table.column_names.index(name)
        column = table[name]
        if string_ids:
            column = _text_ids(column, spec.columns[name], locate)
        else:
            column = integer_ids(column, spec.columns[name], locate)
        table = table.set_column(index, name, column)
    return table


def _text_ids(column: pa.ChunkedArray, name: str, locate: Locate) -> pa.ChunkedArray:
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    empty = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True)
    if pc.any(empty).as_py():
        raise DataError(
            "missing value", column=name, expected="an id", **locate(pc.index(empty, True).as_py())
        )
    return text


def _with_text_ids(
    events: pa.Table, users: tuple[pa.Table, str] | None, items: tuple[pa.Table, str] | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Each distinct id text its own int64 id, the same in every table; the text kept."""
    frames: dict[str, pd.DataFrame] = {}
    for name, side in (("user_id", users), ("item_id", items)):
        texts = [events[name]] + ([side[0][name]] if side else [])
        known = pc.unique(pa.chunked_array([c for t in texts for c in t.chunks], pa.string()))
        known = known.take(pc.sort_indices(known))
        codes = pa.array(np.arange(1, len(known) + 1, dtype=np.int64))

        def encode(column: pa.ChunkedArray, known=known, codes=codes) -> pa.Array:
            return codes.take(pc.index_in(column, value_set=known))

        if side:
            table = side[0]
            table = table.set_column(table.column_names.index(name), name, encode(table[name]))
            frame = table.to_pandas()
            frame.insert(1, SOURCE_ID[name], side[0][name].to_pandas())
        else:
            used = sorted_unique(encode(events[name]).to_numpy())
            frame = pd.DataFrame({name: used, SOURCE_ID[name]: known.take(used - 1).to_pandas()})
        frames[name] = frame
        events = events.set_column(events.column_names.index(name), name, encode(events[name]))
    return events_frame(events), frames["user_id"], frames["item_id"]


def _distinct(interactions: pd.DataFrame, name: str) -> pd.DataFrame:
    return pd.DataFrame({name: sorted_unique(interactions[name].to_numpy())})


def _locator(spec: TableFile) -> Locate:
    """Row -> where it is in the file: a parquet row, or a CSV line as an editor counts it."""
    if is_parquet(spec.path):
        return lambda row: {"file": spec.path, "row": row + 1}
    return lambda row: {
        "file": spec.path,
        "line": line_of_row(spec.path, spec.encoding, row, header=True),
    }
