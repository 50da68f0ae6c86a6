"""Where a delimited file breaks its expected form: line-level diagnosis, run after a failure.

The readers parse with pyarrow's multi-threaded reader and come here only once something
failed, so the happy path pays for no Python-level checks. Everything here streams the file
block by block: a bad line in a 25M-line file costs one block of memory and stops at the
block that holds it. Line numbers are 1-based and count blank lines, as an editor shows them.
"""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from clue_pipeline.data.errors import MAX_NAMES_SHOWN, DataError, name_list

_LINE_DELIMITER = "\x1e"  # a delimiter no text line holds: reads a file one line per row
BLOCK_BYTES = 1 << 24  # pyarrow block size; also the unit of the streamed diagnosis
_SEPARATOR_GUESSES = ("::", "\t", "|", ";", ",", " ")
INT_PATTERN = r"^\s*[0-9]+\s*$"
FLOAT_PATTERN = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
INT64_MAX = str(np.iinfo(np.int64).max)
INT64_DIGITS = len(INT64_MAX)


def diagnose(
    path: Path,
    sep: str,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    encoding: str,
    header: bool,
    quoted: bool,
) -> DataError | None:
    """Find the first line that breaks the expected form; only runs after a failed parse.

    Streams the file block by block, so a bad line in a 25M-line file costs one block of
    memory and stops at the block that holds it.
    """
    skip_header = header
    try:
        for lines, numbers in line_batches(path, encoding):
            if skip_header and len(lines):
                lines, numbers, skip_header = lines[1:], numbers[1:], False
            found = _first_bad_line(lines, numbers, path, sep, names, types, quoted)
            if found is not None:
                return found
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return undecodable(path, encoding)
    return None


def _first_bad_line(
    lines: pa.Array,
    numbers: np.ndarray,
    path: Path,
    sep: str,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    quoted: bool,
) -> DataError | None:
    text = pc.replace_substring_regex(lines, r'"[^"]*"', '""') if quoted else lines
    counts = pc.add(pc.count_substring(text, sep), 1).to_numpy()
    shown = sep.join(names) if len(names) <= MAX_NAMES_SHOWN else name_list(names)
    expected_form = f"{len(names)} fields {shown} separated by {sep!r}"
    if (wrong := np.flatnonzero(counts != len(names))).size:
        first = wrong[0]
        line_text = lines[int(first)].as_py()
        return DataError(
            f"found {counts[first]} field(s) separated by {sep!r}"
            + separator_hint(line_text if counts[first] == 1 else "", sep),
            file=path,
            line=int(numbers[first]),
            expected=expected_form,
        )
    fields = pc.split_pattern(text, sep)
    for index, name in enumerate(names):
        kind = types.get(name)
        if kind is None or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            continue
        pattern = INT_PATTERN if pa.types.is_integer(kind) else FLOAT_PATTERN
        values = pc.list_element(fields, index)
        bad = np.flatnonzero(~pc.match_substring_regex(values, pattern).to_numpy(False))
        if not bad.size and pa.types.is_integer(kind):
            digits = pc.utf8_trim_whitespace(values)
            huge = pc.or_(
                pc.greater(pc.utf8_length(digits), INT64_DIGITS),
                pc.and_(
                    pc.equal(pc.utf8_length(digits), INT64_DIGITS),
                    pc.greater(digits, INT64_MAX),
                ),
            )
            if (over := np.flatnonzero(huge.to_numpy(zero_copy_only=False))).size:
                return DataError(
                    f"{digits[int(over[0])].as_py()} is larger than a 64-bit integer",
                    file=path,
                    line=int(numbers[over[0]]),
                    column=name,
                    expected=f"a non-negative integer up to {INT64_MAX}",
                )
        if bad.size:
            value = values[int(bad[0])].as_py()
            what = "a non-negative integer" if pa.types.is_integer(kind) else "a number"
            problem = "missing value" if value.strip() == "" else f"{value!r} is not {what}"
            return DataError(
                problem, file=path, line=int(numbers[bad[0]]), column=name, expected=what
            )
    return None


def undecodable(path: Path, encoding: str) -> DataError | None:
    """Name the line of the first byte that is not valid in ``encoding`` (streamed)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    newlines = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        while chunk := handle.read(BLOCK_BYTES):
            pending = decoder.getstate()[0]  # an unfinished character: never a newline
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                data = pending + chunk
                return DataError(
                    f"byte {data[err.start]:#04x} cannot be decoded as {encoding}",
                    file=path,
                    line=newlines + data.count(b"\n", 0, err.start) + 1,
                    expected=f"{encoding} text, or the file's real encoding in the parameters "
                    "(e.g. encoding: latin-1)",
                )
            newlines += chunk.count(b"\n")
    return None


def separator_hint(line: str, sep: str) -> str:
    for guess in _SEPARATOR_GUESSES:
        if guess != sep and guess in line:
            return f"; the line looks {guess!r}-separated, not {sep!r}"
    return ""


def line_of_row(path: Path, encoding: str, row: int, header: bool) -> int:
    """The line number of a parsed row (pyarrow skips blank lines, editors count them)."""
    wanted, seen = row + int(header), 0
    for _, numbers in line_batches(path, encoding):
        if wanted < seen + len(numbers):
            return int(numbers[wanted - seen])
        seen += len(numbers)
    raise DataError(f"has no row {row + 1}", file=path, expected="a row the reader reported")


def line_batches(path: Path, encoding: str) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """Non-blank lines block by block, with their 1-based line numbers."""
    first = 1
    for batch in pv.open_csv(str(path), **line_options(encoding)):
        lines = batch.column(0)
        keep = nonblank(lines)
        yield lines.filter(keep), first + np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        first += len(lines)


def line_options(encoding: str) -> dict[str, Any]:
    """pyarrow options that read a file one physical line per row, blank lines included."""
    return {
        "read_options": pv.ReadOptions(
            column_names=["line"], encoding=pyarrow_encoding(encoding), block_size=BLOCK_BYTES
        ),
        "parse_options": pv.ParseOptions(
            delimiter=_LINE_DELIMITER, quote_char=False, ignore_empty_lines=False
        ),
        "convert_options": pv.ConvertOptions(
            column_types={"line": pa.string()}, strings_can_be_null=False
        ),
    }


def nonblank(lines: pa.Array) -> pa.Array:
    return pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)


def without_bom(lines: pa.Array) -> pa.Array:
    """Editors on Windows start UTF-8 files with U+FEFF; it is not part of the first id."""
    if len(lines) and lines[0].as_py().startswith("\ufeff"):
        first = pa.array([lines[0].as_py().lstrip("\ufeff")], type=lines.type)
        return pa.concat_arrays([first, lines[1:]])
    return lines


def pyarrow_encoding(encoding: str) -> str:
    return "utf8" if encoding.lower().replace("-", "") == "utf8" else encoding
