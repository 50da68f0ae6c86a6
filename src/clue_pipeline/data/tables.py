"""Delimited text and parquet files read into pyarrow tables, with the contract's types.

Parsing runs in pyarrow's multi-threaded CSV reader; when it fails, ``csv_diagnosis`` finds
the line at fault. Parquet columns are cast to the contract types, bad values named by row.
"""

from __future__ import annotations

import codecs
import gzip
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from clue_pipeline.data.csv_diagnosis import (
    BLOCK_BYTES,
    FLOAT_PATTERN,
    INT_PATTERN,
    diagnose,
    line_of_row,
    line_options,
    nonblank,
    pyarrow_encoding,
    separator_hint,
    undecodable,
    without_bom,
)
from clue_pipeline.data.errors import DataError, name_list
from clue_pipeline.data.validation import TableFile, check_values

_UNIT_SEP = "\x1f"  # stands in for multi-character separators such as '::'
_PARQUET_SUFFIXES = (".parquet", ".pq")
_TEXT_PROBE_BYTES = 1 << 16  # how much of a text file is looked at for NUL bytes
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)

EVENT_TYPES: dict[str, pa.DataType] = {
    "user_id": pa.int64(),
    "item_id": pa.int64(),
    "timestamp": pa.int64(),
    "rating": pa.float64(),
    "domain": pa.string(),
}
IDS_AND_TIME = ("user_id", "item_id", "timestamp")


def read_text_table(
    path: Path,
    sep: str,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    *,
    encoding: str = "utf-8",
) -> pa.Table:
    """A header-less delimited file whose fields are ``names``; numbers checked on the way."""
    require_file(path)
    require_text(path, encoding)
    types = {n: t for n, t in types.items() if n in names}
    table = _read_csv(path, sep, list(names), None, types, encoding, quoted=False)
    ids = [n for n in IDS_AND_TIME if n in names]
    _check_numbers(table, path, types, encoding, header=False, non_negative=ids)
    return table


def read_header_csv(
    path: Path,
    columns: Mapping[str, str],
    *,
    sep: str = ",",
    types: Mapping[str, pa.DataType] = EVENT_TYPES,
    encoding: str = "utf-8",
    quoted: bool = False,
) -> pa.Table:
    """A delimited file with a header; ``columns`` maps contract names to header names."""
    require_file(path)
    if _is_empty(path):
        raise DataError(
            "is empty (0 bytes)",
            file=path,
            expected=f"a header naming {', '.join(columns.values())} separated by {sep!r}",
        )
    require_text(path, encoding)
    header = _read_header(path, sep, encoding)
    if header == [""]:
        raise DataError(
            "the header line is blank",
            file=path,
            line=1,
            expected=f"a header naming {', '.join(columns.values())} separated by {sep!r}",
        )
    for name, source in columns.items():
        if source not in header:
            raise DataError(
                f"column {source!r} (for {name}) is missing; the header has {name_list(header)}"
                + separator_hint(header[0] if len(header) == 1 else "", sep),
                file=path,
                line=1,
                column=source,
                expected=f"a header naming {', '.join(columns.values())} separated by {sep!r}",
            )
    _refuse_repeated_columns(header, columns, path, line=1)
    file_types = {columns[n]: t for n, t in types.items() if n in columns}
    table = _read_csv(path, sep, None, list(columns.values()), file_types, encoding, quoted)
    ids = [columns[n] for n in IDS_AND_TIME if n in columns]
    _check_numbers(table, path, file_types, encoding, header=True, non_negative=ids)
    return table.rename_columns([_rename(columns, n) for n in table.column_names])


def read_mapped_parquet(
    path: Path, columns: Mapping[str, str], types: Mapping[str, pa.DataType] = EVENT_TYPES
) -> pa.Table:
    """Parquet columns renamed to contract names and cast, bad values named by row."""
    require_file(path)
    found = pq.read_schema(path).names
    for name, source in columns.items():
        if source not in found:
            raise DataError(
                f"column {source!r} (for {name}) is missing; the file has {name_list(found)}",
                file=path,
                column=source,
                expected=f"columns {', '.join(columns.values())}",
            )
    _refuse_repeated_columns(found, columns, path)
    table = pq.read_table(path, columns=list(columns.values()))
    file_types = {columns[n]: t for n, t in types.items() if n in columns}
    for index, name in enumerate(table.column_names):
        if name in file_types:
            cast = _cast_column(table[name], file_types[name], path, name)
            table = table.set_column(index, name, cast)
    numeric = [n for n, t in file_types.items() if t != pa.string()]

    def locate(row: int) -> dict[str, Any]:
        return {"file": path, "row": row + 1}

    ids = [columns[n] for n in IDS_AND_TIME if n in columns]
    check_values(table, numeric, locate, non_negative=ids)
    return table.rename_columns([_rename(columns, n) for n in table.column_names])


def read_mapped_table(spec: TableFile, types: Mapping[str, pa.DataType]) -> pa.Table:
    """A user-named CSV or parquet file (by its suffix), columns renamed to contract names."""
    if is_parquet(spec.path):
        return read_mapped_parquet(spec.path, spec.columns, types)
    return read_header_csv(
        spec.path, spec.columns, sep=spec.sep, types=types, encoding=spec.encoding, quoted=True
    )


def events_frame(table: pa.Table) -> pd.DataFrame:
    """Contract column order; file order stands in for time where there is no timestamp.

    Pass the table as a temporary: its buffers are released column by column while pandas
    takes them over, which keeps the peak near one copy of the events rather than two.
    """
    if "timestamp" not in table.column_names:
        table = table.append_column("timestamp", pa.array(np.arange(table.num_rows)))
    names = [n for n in (*IDS_AND_TIME, "rating", "domain") if n in table.column_names]
    table = table.select(names)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by hashing first: on 25M ids it is an order of magnitude faster here."""
    return np.sort(pd.unique(values))


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in _PARQUET_SUFFIXES


def _refuse_repeated_columns(
    found: Sequence[str], columns: Mapping[str, str], path: Path, line: int | None = None
) -> None:
    """A mapped column named twice: which of the two holds the ids is anyone's guess."""
    for name, source in columns.items():
        positions = [i + 1 for i, found_name in enumerate(found) if found_name == source]
        if len(positions) > 1:
            raise DataError(
                f"column {source!r} (for {name}) appears {len(positions)} times "
                f"(fields {', '.join(map(str, positions[:5]))})",
                file=path,
                line=line,
                column=source,
                expected="each column named once",
            )


def _rename(columns: Mapping[str, str], source: str) -> str:
    return next(name for name, src in columns.items() if src == source)


def require_file(path: Path) -> None:
    """An existing regular file; a pipe or device is named as such and never opened (a FIFO
    would block the run, ``/dev/zero`` never ends)."""
    if path.is_dir():
        raise DataError("is a folder, not a file", file=path, expected="an existing file")
    if problem := special_file(path):
        raise DataError(problem, file=path, expected="a regular file")
    if not path.is_file():
        raise DataError("file not found", file=path, expected="an existing file")


def special_file(path: Path) -> str | None:
    """``is a named pipe (FIFO), not a regular file`` and the like, or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, what in _SPECIAL_FILES:
        if test(mode):
            link = f" (a symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
            return f"is {what}{link}, not a regular file"
    return None


def require_text(path: Path, encoding: str) -> None:
    """Refuse binary data before pyarrow sees it: a file of NUL bytes has no line breaks, and
    pyarrow's answer to that ("straddling object straddles two block boundaries") names
    nothing a user can act on. UTF-16 and UTF-32 text hold NUL bytes and are let through."""
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        start = handle.read(_TEXT_PROBE_BYTES)
    offset = start.find(b"\x00")
    if offset < 0 or not _decodes(start[:offset], encoding):
        return  # an earlier byte that is not text is reported by the reader, with its line
    what = "only NUL bytes" if start.count(b"\x00") == len(start) else "a NUL byte"
    raise DataError(
        f"holds {what} (0x00, first at byte {offset}): binary data, which cannot be decoded "
        f"as {encoding} text",
        file=path,
        line=start.count(b"\n", 0, offset) + 1,
        expected=f"a {encoding} text file, or the file's real encoding in the parameters",
    )


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _is_empty(path: Path) -> bool:
    """Zero bytes, or a gzip file that decompresses to nothing."""
    if path.stat().st_size == 0:
        return True
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read(1) == b""
    return False


def nonblank_lines(path: Path, encoding: str) -> tuple[pa.Array, np.ndarray]:
    """All non-blank lines and their 1-based line numbers."""
    require_file(path)
    if _is_empty(path):
        raise DataError("is empty (0 bytes)", file=path, expected="one user per line")
    require_text(path, encoding)
    try:
        table = pv.read_csv(str(path), **line_options(encoding))
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise undecodable(path, encoding) or DataError(
            f"cannot be read as {encoding} text: {_arrow_reason(err)}",
            file=path,
            expected="one user per line",
        ) from err
    lines = without_bom(table.column("line").combine_chunks())
    keep = nonblank(lines)
    numbers = np.flatnonzero(keep.to_numpy(zero_copy_only=False)) + 1
    if numbers.size == 0:
        raise DataError("holds only blank lines", file=path, expected="one user per line")
    return lines.filter(keep), numbers.astype(np.int64)


def _source(path: Path, sep: str, encoding: str) -> tuple[Any, str]:
    """What pyarrow reads and with which one-character delimiter.

    pyarrow parses single-character delimiters only; a multi-character one (ML-1M's ``::``)
    is replaced in memory by a control character no text field holds.
    """
    if len(sep) == 1:
        return str(path), sep
    raw = _raw_bytes(path).replace(sep.encode(encoding), _UNIT_SEP.encode())
    return pa.BufferReader(raw), _UNIT_SEP


def _read_csv(
    path: Path,
    sep: str,
    names: list[str] | None,
    include: list[str] | None,
    types: Mapping[str, pa.DataType],
    encoding: str,
    quoted: bool,
) -> pa.Table:
    source, delimiter = _source(path, sep, encoding)
    try:
        return pv.read_csv(
            source,
            read_options=pv.ReadOptions(
                column_names=names, encoding=pyarrow_encoding(encoding), block_size=BLOCK_BYTES
            ),
            parse_options=pv.ParseOptions(
                delimiter=delimiter, quote_char='"' if quoted else False, ignore_empty_lines=True
            ),
            convert_options=pv.ConvertOptions(
                column_types=dict(types), include_columns=include, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        header = names is None
        field_names = _read_header(path, sep, encoding) if header else names
        raise diagnose(path, sep, field_names, types, encoding, header, quoted) or DataError(
            f"cannot be parsed: {_arrow_reason(err)}",
            file=path,
            expected=f"fields {name_list(field_names)} separated by {sep!r}",
        ) from err


def _arrow_reason(err: Exception) -> str:
    """pyarrow's message, or what it means where it names only pyarrow's internals."""
    if "straddl" in str(err):
        return f"a line is longer than {BLOCK_BYTES >> 20} MiB (is it a text file?)"
    return str(err)


def _read_header(path: Path, sep: str, encoding: str) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.readline(BLOCK_BYTES + 1)
    if len(raw) > BLOCK_BYTES:
        raise DataError(
            f"the header line is longer than {BLOCK_BYTES >> 20} MiB",
            file=path,
            line=1,
            expected="a header line naming the columns",
        )
    try:
        first = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise undecodable(path, encoding) or DataError(
            f"the header line cannot be decoded as {encoding}", file=path, line=1
        ) from err
    first = first.lstrip("\ufeff").rstrip("\r\n")
    return [name.strip().strip('"') for name in first.split(sep)]


def _check_numbers(
    table: pa.Table,
    path: Path,
    types: Mapping[str, pa.DataType],
    encoding: str,
    header: bool,
    non_negative: Sequence[str],
) -> None:
    numeric = [n for n, t in types.items() if pa.types.is_integer(t) or pa.types.is_floating(t)]
    numeric = [n for n in numeric if n in table.column_names]

    def locate(row: int) -> dict[str, Any]:
        return {"file": path, "line": line_of_row(path, encoding, row, header)}

    check_values(table, numeric, locate, non_negative=non_negative)


def _cast_column(
    column: pa.ChunkedArray, target: pa.DataType, path: Path, name: str
) -> pa.ChunkedArray:
    """Cast a parquet column to its contract type; explain values that will not go."""
    if column.type == target:
        return column
    if pa.types.is_boolean(column.type) and not pa.types.is_floating(target):
        ids = pa.types.is_string(target) or pa.types.is_large_string(target)
        wanted = (
            "integer ids, or text ids with ingest.generic.string_ids: true"
            if ids
            else (f"{target} values")
        )
        raise DataError(
            f"holds booleans (true/false), not {'ids' if ids else target}",
            file=path,
            column=name,
            expected=f"{wanted} (true/false would silently become 1 and 0)",
        )
    if pa.types.is_timestamp(column.type) and pa.types.is_integer(target):
        return pc.cast(pc.cast(column, pa.timestamp("s"), safe=False), pa.int64())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        pattern = INT_PATTERN if pa.types.is_integer(target) else FLOAT_PATTERN
        if not pa.types.is_string(target):
            ok = pc.match_substring_regex(column, pattern)
            bad = pc.invert(pc.fill_null(ok, True))
            if pc.any(bad).as_py():
                row = pc.index(bad, True).as_py()
                what = "a non-negative integer" if pa.types.is_integer(target) else "a number"
                raise DataError(
                    f"{column[row].as_py()!r} is not {what}",
                    file=path,
                    row=row + 1,
                    column=name,
                    expected=str(target),
                )
            column = pc.utf8_trim_whitespace(column)
    elif pa.types.is_floating(column.type) and pa.types.is_integer(target):
        fractional = pc.not_equal(pc.floor(column), column)
        if pc.any(fractional).as_py():
            row = pc.index(pc.fill_null(fractional, False), True).as_py()
            raise DataError(
                f"{column[row].as_py()!r} is not a whole number",
                file=path,
                row=row + 1,
                column=name,
                expected="integer ids and timestamps",
            )
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise DataError(f"cannot be read as {target}: {err}", file=path, column=name) from err


def _raw_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read()
