"""Readers of every supported raw format into the three contract tables.

Each reader returns :class:`RawDataset` (``interactions``, ``users``, ``items`` with the dtypes
of docs/architecture.md). Parsing runs in pyarrow's multi-threaded CSV reader; line-level
diagnosis (which line, which field, what was expected) runs only once something failed, so
the happy path on tens of millions of rows pays for no Python-level checks.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.validation import IngestOptions, TableFile, check_values

_LINE_DELIMITER = "\x1e"  # a delimiter no text line holds: reads a file one line per row
_UNIT_SEP = "\x1f"  # stands in for multi-character separators such as '::'
_BLOCK_BYTES = 1 << 24  # pyarrow block size; also the unit of the streamed diagnosis
_SEPARATOR_GUESSES = ("::", "\t", "|", ";", ",", " ")
_INT_PATTERN = r"^\s*[0-9]+\s*$"
_FLOAT_PATTERN = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_PARQUET_SUFFIXES = (".parquet", ".pq")
_INT64_MAX = str(np.iinfo(np.int64).max)
_INT64_DIGITS = len(_INT64_MAX)

EVENT_TYPES: dict[str, pa.DataType] = {
    "user_id": pa.int64(),
    "item_id": pa.int64(),
    "timestamp": pa.int64(),
    "rating": pa.float64(),
    "domain": pa.string(),
}
_IDS_AND_TIME = ("user_id", "item_id", "timestamp")


@dataclass
class RawDataset:
    """The three tables every format is read into."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


@dataclass(frozen=True)
class ReaderSpec:
    """A format: how to read it and which files a download must leave in its folder."""

    read: Callable[[IngestOptions], RawDataset]
    required_files: tuple[str, ...]
    summary: str


def read_dataset(options: IngestOptions) -> RawDataset:
    """Read ``options.path`` in ``options.format``; every problem is a :class:`DataError`."""
    spec = READERS.get(options.format)
    if spec is None:
        raise DataError(
            f"unknown format {options.format!r}",
            parameter="ingest.format",
            expected=f"one of {', '.join(sorted(READERS))}",
        )
    expected = f"{spec.summary} (files: {', '.join(spec.required_files) or 'one file'})"
    _check_path_kind(options.path, bool(spec.required_files), expected)
    try:
        return spec.read(options)
    except DataError:
        raise
    except (OSError, pa.ArrowException, UnicodeDecodeError) as err:
        # Whatever the file system or pyarrow says stays attached as the cause.
        raise DataError(
            f"cannot be read: {err}",
            file=getattr(err, "filename", None) or options.path,
            parameter="ingest.path",
            expected=expected,
        ) from err


def known_formats() -> tuple[str, ...]:
    return tuple(sorted(READERS))


def _check_path_kind(path: Path, wants_folder: bool, expected: str) -> None:
    """A missing path, a symlink loop, or a file where a folder belongs (and the reverse)."""
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            problem = "is a symbolic link loop"
        except OSError as err:
            problem = (
                "is a symbolic link loop"
                if getattr(err, "errno", None) == errno.ELOOP
                else f"is a symbolic link to a missing target ({os.readlink(path)})"
            )
        else:
            problem = "cannot be resolved"
        raise DataError(problem, file=path, parameter="ingest.path", expected=expected)
    if not path.exists():
        raise DataError("does not exist", file=path, parameter="ingest.path", expected=expected)
    if wants_folder and not path.is_dir():
        raise DataError(
            "is a file, not a folder", file=path, parameter="ingest.path", expected=expected
        )
    if not wants_folder and path.is_dir():
        raise DataError(
            "is a folder, not a file", file=path, parameter="ingest.path", expected=expected
        )


# --- formats ---------------------------------------------------------------------------------


def read_ml_latest_small(options: IngestOptions) -> RawDataset:
    folder = _folder(options)
    ratings = read_header_csv(
        folder / "ratings.csv",
        {"user_id": "userId", "item_id": "movieId", "rating": "rating", "timestamp": "timestamp"},
    )
    movies = read_header_csv(
        folder / "movies.csv",
        {"item_id": "movieId", "title": "title", "genres": "genres"},
        quoted=True,
    )
    interactions = events_frame(ratings)
    items = movies.to_pandas()
    items["genres"] = items["genres"].replace("(no genres listed)", "")
    return RawDataset(interactions, _users_of(interactions), items)


def read_ml_100k(options: IngestOptions) -> RawDataset:
    folder = _folder(options)
    ratings = read_text_table(
        folder / "u.data", "\t", ("user_id", "item_id", "rating", "timestamp"), EVENT_TYPES
    )
    users = read_text_table(
        folder / "u.user",
        "|",
        ("user_id", "age", "gender", "occupation", "zip_code"),
        {"user_id": pa.int64(), "age": pa.int64()} | _strings("gender", "occupation", "zip_code"),
    )
    genre_table = read_text_table(
        folder / "u.genre", "|", ("genre", "code"), {"genre": pa.string(), "code": pa.int64()}
    ).sort_by("code")
    genre_names = genre_table.column("genre").to_pylist()
    flag_names = tuple(f"genre_{code}" for code in genre_table.column("code").to_pylist())
    movies = read_text_table(
        folder / "u.item",
        "|",
        ("item_id", "title", "release_date", "video_release_date", "imdb_url", *flag_names),
        {"item_id": pa.int64()}
        | _strings("title", "release_date", "video_release_date", "imdb_url")
        | dict.fromkeys(flag_names, pa.int8()),
        encoding="latin-1",
    )
    flags = np.column_stack([movies.column(n).to_numpy(zero_copy_only=False) for n in flag_names])
    items = pd.DataFrame(
        {
            "item_id": movies.column("item_id").to_numpy(),
            "title": movies.column("title").to_pandas(),
            "genres": flags_to_genres(flags.astype(bool), genre_names),
            "release_date": movies.column("release_date").to_pandas(),
        }
    )
    return RawDataset(events_frame(ratings), users.to_pandas(), items)


def read_ml_1m(options: IngestOptions) -> RawDataset:
    folder = _folder(options)
    ratings = read_text_table(
        folder / "ratings.dat",
        "::",
        ("user_id", "item_id", "rating", "timestamp"),
        EVENT_TYPES,
        encoding="latin-1",
    )
    return RawDataset(events_frame(ratings), read_ml1m_users(folder), read_ml1m_movies(folder))


def read_ml_1m_partial(options: IngestOptions) -> RawDataset:
    """ML-1M with only the public parts of ratings.dat (see the data's SOURCES.md).

    ``timed``: users 1..2999 with real ratings and timestamps. ``all_users``: all 6,040 users
    from the (user, movie) pairs in ratings.dat's line order, whose row position stands in for
    time (enough for profiling, not for a time-ordered benchmark).
    """
    folder = _folder(options)
    if options.ml1m_partial_scope == "timed":
        ratings = read_text_table(
            folder / "cs100_lab4_ratings.dat.gz",
            "::",
            ("user_id", "item_id", "rating", "timestamp"),
            EVENT_TYPES,
            encoding="latin-1",
        )
        interactions = events_frame(ratings)
    else:
        pairs = read_mapped_parquet(
            folder / "user_movie_pairs_fileorder.parquet",
            {"user_id": "userID", "item_id": "movieID"},
        )
        interactions = events_frame(pairs)
    users = read_ml1m_users(folder.parent)
    users = users[users["user_id"].isin(interactions["user_id"].unique())].reset_index(drop=True)
    return RawDataset(interactions, users, read_ml1m_movies(folder.parent))


def read_s3rec(options: IngestOptions) -> RawDataset:
    """``user item item ...`` per line, items already in time order: time = position."""
    path = options.path
    lines, line_numbers = _nonblank_lines(path, "utf-8")
    parts = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(lines))
    lengths = pc.list_value_length(parts).to_numpy()
    if (short := np.flatnonzero(lengths < 2)).size:
        raise DataError(
            "a user without items" + _separator_hint(lines[int(short[0])].as_py(), " "),
            file=path,
            line=int(line_numbers[short[0]]),
            expected="'user item [item ...]' separated by spaces",
        )
    values, row, position = _split_to_ints(parts, path, line_numbers, "item")
    is_item = position > 0
    interactions = pd.DataFrame(
        {
            "user_id": values[np.flatnonzero(~is_item)][row[is_item]],
            "item_id": values[is_item],
            "timestamp": position[is_item] - 1,
        }
    )
    return RawDataset(interactions, _users_of(interactions), _items_of(interactions))


def read_peterrec(options: IngestOptions) -> RawDataset:
    """PeterRec lines ``item,item,...`` (left-padded) or ``source,,targets``; user = line number.

    Targets become ``domain == "target"`` interactions (cold-start) or the users' ``label``
    (profiling), as ``ingest.peterrec.targets`` says.
    """
    path = options.path
    lines, line_numbers = _nonblank_lines(path, "utf-8")
    halves = pc.split_pattern(lines, ",,", max_splits=1)
    has_target = pc.equal(pc.list_value_length(halves), 2).to_numpy(zero_copy_only=False)
    source = pc.split_pattern(pc.list_element(halves, 0), ",")
    source_ids, source_row, source_pos = _split_to_ints(
        source, path, line_numbers, "item", skip=options.peterrec_pad_token
    )
    users = pd.DataFrame({"user_id": line_numbers.astype(np.int64)})
    frames = [
        pd.DataFrame(
            {
                "user_id": line_numbers[source_row],
                "item_id": source_ids,
                "timestamp": source_pos,
                "domain": "source",
            }
        )
    ]
    target_rows = np.flatnonzero(has_target)
    targets = pc.split_pattern(pc.list_element(halves.filter(pa.array(has_target)), 1), ",")
    if options.peterrec_targets == "label":
        if (unlabelled := np.flatnonzero(~has_target)).size:
            raise DataError(
                "no label after ',,'",
                file=path,
                line=int(line_numbers[unlabelled[0]]),
                parameter="ingest.peterrec.targets",
                expected="'item,...,,label' on every line when targets: label",
            )
        counts = pc.list_value_length(targets).to_numpy()
        if (several := np.flatnonzero(counts != 1)).size:
            raise DataError(
                f"{counts[several[0]]} labels after ',,'",
                file=path,
                line=int(line_numbers[target_rows[several[0]]]),
                parameter="ingest.peterrec.targets",
                expected="exactly one label per line when targets: label "
                "(use targets: items for target-domain items)",
            )
        labels = pc.list_flatten(targets)
        numeric = pc.all(pc.match_substring_regex(labels, _INT_PATTERN)).as_py()
        users["label"] = (
            pc.cast(pc.utf8_trim_whitespace(labels), pa.int64()).to_numpy()
            if numeric
            else labels.to_pandas()
        )
    elif len(target_rows):
        offset = pc.list_value_length(source).to_numpy()[target_rows]
        target_ids, target_row, target_pos = _split_to_ints(
            targets, path, line_numbers[target_rows], "target item"
        )
        frames.append(
            pd.DataFrame(
                {
                    "user_id": line_numbers[target_rows][target_row],
                    "item_id": target_ids,
                    "timestamp": offset[target_row] + target_pos,
                    "domain": "target",
                }
            )
        )
    interactions = pd.concat(frames, ignore_index=True)
    interactions["domain"] = interactions["domain"].astype("str")
    return RawDataset(interactions, users, _items_of(interactions))


def read_generic(options: IngestOptions) -> RawDataset:
    """Any CSV/parquet event log, its columns named by ``ingest.generic.columns``."""
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
    interactions = events_frame(read_mapped_table(spec, EVENT_TYPES))
    users = _users_of(interactions)
    if options.generic_users is not None:
        users = read_mapped_table(options.generic_users, {"user_id": pa.int64()}).to_pandas()
    items = _items_of(interactions)
    if options.generic_items is not None:
        types = {"item_id": pa.int64()} | _strings("title", "genres")
        items = read_mapped_table(options.generic_items, types).to_pandas()
    return RawDataset(interactions, users, items)


# --- shared pieces of the MovieLens formats ---------------------------------------------------


def read_ml1m_users(folder: Path) -> pd.DataFrame:
    return read_text_table(
        folder / "users.dat",
        "::",
        ("user_id", "gender", "age", "occupation", "zip_code"),
        {"user_id": pa.int64(), "age": pa.int64(), "occupation": pa.int64()}
        | _strings("gender", "zip_code"),
        encoding="latin-1",
    ).to_pandas()


def read_ml1m_movies(folder: Path) -> pd.DataFrame:
    return read_text_table(
        folder / "movies.dat",
        "::",
        ("item_id", "title", "genres"),
        {"item_id": pa.int64()} | _strings("title", "genres"),
        encoding="latin-1",
    ).to_pandas()


def flags_to_genres(flags: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(n, g) 0/1 genre flags -> ``"A|B"`` strings, one vector operation per genre."""
    joined = pd.Series([""] * flags.shape[0], dtype="str")
    for column, name in enumerate(names):
        joined = joined.where(~flags[:, column], joined + name + "|")
    return joined.str.rstrip("|").to_numpy()


def events_frame(table: pa.Table) -> pd.DataFrame:
    """Contract column order; file order stands in for time where there is no timestamp.

    Pass the table as a temporary: its buffers are released column by column while pandas
    takes them over, which keeps the peak near one copy of the events rather than two.
    """
    if "timestamp" not in table.column_names:
        table = table.append_column("timestamp", pa.array(np.arange(table.num_rows)))
    names = [n for n in (*_IDS_AND_TIME, "rating", "domain") if n in table.column_names]
    table = table.select(names)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _users_of(interactions: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"user_id": sorted_unique(interactions["user_id"].to_numpy())})


def _items_of(interactions: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"item_id": sorted_unique(interactions["item_id"].to_numpy())})


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by hashing first: on 25M ids it is an order of magnitude faster here."""
    return np.sort(pd.unique(values))


def _strings(*names: str) -> dict[str, pa.DataType]:
    return dict.fromkeys(names, pa.string())


def _folder(options: IngestOptions) -> Path:
    if not options.path.is_dir():
        raise DataError(
            "is not a folder",
            file=options.path,
            parameter="ingest.path",
            expected=f"the folder holding {', '.join(READERS[options.format].required_files)}",
        )
    return options.path


# --- delimited text ---------------------------------------------------------------------------


def read_text_table(
    path: Path,
    sep: str,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    *,
    encoding: str = "utf-8",
) -> pa.Table:
    """A header-less delimited file whose fields are ``names``; numbers checked on the way."""
    _require_file(path)
    types = {n: t for n, t in types.items() if n in names}
    table = _read_csv(path, sep, list(names), None, types, encoding, quoted=False)
    ids = [n for n in _IDS_AND_TIME if n in names]
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
    _require_file(path)
    if _is_empty(path):
        raise DataError(
            "is empty (0 bytes)",
            file=path,
            expected=f"a header naming {', '.join(columns.values())} separated by {sep!r}",
        )
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
                f"column {source!r} (for {name}) is missing; the header has {header}"
                + _separator_hint(header[0] if len(header) == 1 else "", sep),
                file=path,
                line=1,
                column=source,
                expected=f"a header naming {', '.join(columns.values())} separated by {sep!r}",
            )
    file_types = {columns[n]: t for n, t in types.items() if n in columns}
    table = _read_csv(path, sep, None, list(columns.values()), file_types, encoding, quoted)
    ids = [columns[n] for n in _IDS_AND_TIME if n in columns]
    _check_numbers(table, path, file_types, encoding, header=True, non_negative=ids)
    return table.rename_columns([_rename(columns, n) for n in table.column_names])


def read_mapped_parquet(
    path: Path, columns: Mapping[str, str], types: Mapping[str, pa.DataType] = EVENT_TYPES
) -> pa.Table:
    """Parquet columns renamed to contract names and cast, bad values named by row."""
    _require_file(path)
    found = pq.read_schema(path).names
    for name, source in columns.items():
        if source not in found:
            raise DataError(
                f"column {source!r} (for {name}) is missing; the file has {found}",
                file=path,
                column=source,
                expected=f"columns {', '.join(columns.values())}",
            )
    table = pq.read_table(path, columns=list(columns.values()))
    file_types = {columns[n]: t for n, t in types.items() if n in columns}
    for index, name in enumerate(table.column_names):
        if name in file_types:
            cast = _cast_column(table[name], file_types[name], path, name)
            table = table.set_column(index, name, cast)
    numeric = [n for n, t in file_types.items() if t != pa.string()]

    def locate(row: int) -> dict[str, Any]:
        return {"file": path, "row": row + 1}

    ids = [columns[n] for n in _IDS_AND_TIME if n in columns]
    check_values(table, numeric, locate, non_negative=ids)
    return table.rename_columns([_rename(columns, n) for n in table.column_names])


def read_mapped_table(spec: TableFile, types: Mapping[str, pa.DataType]) -> pa.Table:
    if spec.path.suffix.lower() in _PARQUET_SUFFIXES:
        return read_mapped_parquet(spec.path, spec.columns, types)
    return read_header_csv(
        spec.path, spec.columns, sep=spec.sep, types=types, encoding=spec.encoding, quoted=True
    )


def _rename(columns: Mapping[str, str], source: str) -> str:
    return next(name for name, src in columns.items() if src == source)


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise DataError("is a folder, not a file", file=path, expected="an existing file")
    if not path.is_file():
        raise DataError("file not found", file=path, expected="an existing file")


def _is_empty(path: Path) -> bool:
    """Zero bytes, or a gzip file that decompresses to nothing."""
    if path.stat().st_size == 0:
        return True
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read(1) == b""
    return False


def _pyarrow_encoding(encoding: str) -> str:
    return "utf8" if encoding.lower().replace("-", "") == "utf8" else encoding


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
                column_names=names, encoding=_pyarrow_encoding(encoding), block_size=_BLOCK_BYTES
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
        raise _diagnose(path, sep, field_names, types, encoding, header, quoted) or DataError(
            f"cannot be parsed: {err}",
            file=path,
            expected=f"fields {sep.join(field_names)} separated by {sep!r}",
        ) from err


def _read_header(path: Path, sep: str, encoding: str) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.readline()
    try:
        first = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise _undecodable(path, encoding) or DataError(
            f"the header line cannot be decoded as {encoding}", file=path, line=1
        ) from err
    first = first.lstrip("\ufeff").rstrip("\r\n")
    return [name.strip().strip('"') for name in first.split(sep)]


def _line_options(encoding: str) -> dict[str, Any]:
    """pyarrow options that read a file one physical line per row, blank lines included."""
    return {
        "read_options": pv.ReadOptions(
            column_names=["line"], encoding=_pyarrow_encoding(encoding), block_size=_BLOCK_BYTES
        ),
        "parse_options": pv.ParseOptions(
            delimiter=_LINE_DELIMITER, quote_char=False, ignore_empty_lines=False
        ),
        "convert_options": pv.ConvertOptions(
            column_types={"line": pa.string()}, strings_can_be_null=False
        ),
    }


def _nonblank(lines: pa.Array) -> pa.Array:
    return pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)


def _nonblank_lines(path: Path, encoding: str) -> tuple[pa.Array, np.ndarray]:
    """All non-blank lines and their 1-based line numbers."""
    _require_file(path)
    if _is_empty(path):
        raise DataError("is empty (0 bytes)", file=path, expected="one user per line")
    try:
        table = pv.read_csv(str(path), **_line_options(encoding))
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise _undecodable(path, encoding) or DataError(
            f"cannot be read as {encoding} text: {err}", file=path, expected="one user per line"
        ) from err
    lines = _without_bom(table.column("line").combine_chunks())
    keep = _nonblank(lines)
    numbers = np.flatnonzero(keep.to_numpy(zero_copy_only=False)) + 1
    if numbers.size == 0:
        raise DataError("holds only blank lines", file=path, expected="one user per line")
    return lines.filter(keep), numbers.astype(np.int64)


def _without_bom(lines: pa.Array) -> pa.Array:
    """Editors on Windows start UTF-8 files with U+FEFF; it is not part of the first id."""
    if len(lines) and lines[0].as_py().startswith("\ufeff"):
        first = pa.array([lines[0].as_py().lstrip("\ufeff")], type=lines.type)
        return pa.concat_arrays([first, lines[1:]])
    return lines


def _line_batches(path: Path, encoding: str) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """Non-blank lines block by block, with their 1-based line numbers."""
    first = 1
    for batch in pv.open_csv(str(path), **_line_options(encoding)):
        lines = batch.column(0)
        keep = _nonblank(lines)
        yield lines.filter(keep), first + np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        first += len(lines)


def _line_of_row(path: Path, encoding: str, row: int, header: bool) -> int:
    """The line number of a parsed row (pyarrow skips blank lines, editors count them)."""
    wanted, seen = row + int(header), 0
    for _, numbers in _line_batches(path, encoding):
        if wanted < seen + len(numbers):
            return int(numbers[wanted - seen])
        seen += len(numbers)
    raise DataError(f"has no row {row + 1}", file=path, expected="a row the reader reported")


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
        return {"file": path, "line": _line_of_row(path, encoding, row, header)}

    check_values(table, numeric, locate, non_negative=non_negative)


def _diagnose(
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
        for lines, numbers in _line_batches(path, encoding):
            if skip_header and len(lines):
                lines, numbers, skip_header = lines[1:], numbers[1:], False
            found = _first_bad_line(lines, numbers, path, sep, names, types, quoted)
            if found is not None:
                return found
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return _undecodable(path, encoding)
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
    expected_form = f"{len(names)} fields {sep.join(names)} separated by {sep!r}"
    if (wrong := np.flatnonzero(counts != len(names))).size:
        first = wrong[0]
        line_text = lines[int(first)].as_py()
        return DataError(
            f"found {counts[first]} field(s) separated by {sep!r}"
            + _separator_hint(line_text if counts[first] == 1 else "", sep),
            file=path,
            line=int(numbers[first]),
            expected=expected_form,
        )
    fields = pc.split_pattern(text, sep)
    for index, name in enumerate(names):
        kind = types.get(name)
        if kind is None or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            continue
        pattern = _INT_PATTERN if pa.types.is_integer(kind) else _FLOAT_PATTERN
        values = pc.list_element(fields, index)
        bad = np.flatnonzero(~pc.match_substring_regex(values, pattern).to_numpy(False))
        if not bad.size and pa.types.is_integer(kind):
            digits = pc.utf8_trim_whitespace(values)
            huge = pc.or_(
                pc.greater(pc.utf8_length(digits), _INT64_DIGITS),
                pc.and_(
                    pc.equal(pc.utf8_length(digits), _INT64_DIGITS),
                    pc.greater(digits, _INT64_MAX),
                ),
            )
            if (over := np.flatnonzero(huge.to_numpy(zero_copy_only=False))).size:
                return DataError(
                    f"{digits[int(over[0])].as_py()} is larger than a 64-bit integer",
                    file=path,
                    line=int(numbers[over[0]]),
                    column=name,
                    expected=f"a non-negative integer up to {_INT64_MAX}",
                )
        if bad.size:
            value = values[int(bad[0])].as_py()
            what = "a non-negative integer" if pa.types.is_integer(kind) else "a number"
            problem = "missing value" if value.strip() == "" else f"{value!r} is not {what}"
            return DataError(
                problem, file=path, line=int(numbers[bad[0]]), column=name, expected=what
            )
    return None


def _undecodable(path: Path, encoding: str) -> DataError | None:
    """Name the line of the first byte that is not valid in ``encoding`` (streamed)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    newlines = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        while chunk := handle.read(_BLOCK_BYTES):
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


def _raw_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read()


def _separator_hint(line: str, sep: str) -> str:
    for guess in _SEPARATOR_GUESSES:
        if guess != sep and guess in line:
            return f"; the line looks {guess!r}-separated, not {sep!r}"
    return ""


def _split_to_ints(
    parts: pa.ListArray, path: Path, line_numbers: np.ndarray, what: str, skip: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten per-line lists of id strings into (ids, line row, position in the line).

    ``skip`` drops a padding token while keeping the positions of the others.
    """
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    row = pc.list_parent_indices(parts).to_numpy()
    offsets = parts.offsets.to_numpy()
    position = np.arange(len(flat), dtype=np.int64) - (offsets[row] - offsets[0])
    if skip is not None:
        keep = pc.not_equal(flat, skip)
        flat = flat.filter(keep)
        mask = keep.to_numpy(zero_copy_only=False)
        row, position = row[mask], position[mask]
    ok = pc.match_substring_regex(flat, r"^[0-9]+$").to_numpy(zero_copy_only=False)
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        value = flat[first].as_py()
        return_problem = "missing value" if value == "" else f"{value!r} is not an integer id"
        raise DataError(
            f"{what} {position[first] + 1}: {return_problem}",
            file=path,
            line=int(line_numbers[row[first]]),
            expected="non-negative integer ids",
        )
    too_long = pc.greater(pc.utf8_length(flat), _INT64_DIGITS).to_numpy(zero_copy_only=False)
    too_long |= pc.and_(
        pc.equal(pc.utf8_length(flat), _INT64_DIGITS), pc.greater(flat, _INT64_MAX)
    ).to_numpy(zero_copy_only=False)
    if too_long.any():
        first = int(np.flatnonzero(too_long)[0])
        raise DataError(
            f"{what} {position[first] + 1}: {flat[first].as_py()} is larger than a 64-bit id",
            file=path,
            line=int(line_numbers[row[first]]),
            expected=f"non-negative integer ids up to {_INT64_MAX}",
        )
    values = pc.cast(flat, pa.int64()).to_numpy()
    return values, row.astype(np.int64), position


def _cast_column(
    column: pa.ChunkedArray, target: pa.DataType, path: Path, name: str
) -> pa.ChunkedArray:
    """Cast a parquet column to its contract type; explain values that will not go."""
    if column.type == target:
        return column
    if pa.types.is_timestamp(column.type) and pa.types.is_integer(target):
        return pc.cast(pc.cast(column, pa.timestamp("s"), safe=False), pa.int64())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        pattern = _INT_PATTERN if pa.types.is_integer(target) else _FLOAT_PATTERN
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


READERS: dict[str, ReaderSpec] = {
    "ml-latest-small": ReaderSpec(
        read_ml_latest_small, ("ratings.csv", "movies.csv"), "the ml-latest-small folder"
    ),
    "ml-100k": ReaderSpec(
        read_ml_100k, ("u.data", "u.user", "u.item", "u.genre"), "the ml-100k folder"
    ),
    "ml-1m": ReaderSpec(read_ml_1m, ("ratings.dat", "users.dat", "movies.dat"), "the ml-1m folder"),
    "ml-1m-partial": ReaderSpec(
        read_ml_1m_partial,
        ("cs100_lab4_ratings.dat.gz", "user_movie_pairs_fileorder.parquet"),
        "movielens-1m/partial, with users.dat and movies.dat in its parent folder",
    ),
    "s3rec": ReaderSpec(read_s3rec, (), "an S3-Rec file of 'user item item ...' lines"),
    "peterrec": ReaderSpec(read_peterrec, (), "a PeterRec file of 'item,item,...[,,targets]'"),
    "generic": ReaderSpec(read_generic, (), "a CSV or parquet event log"),
}
