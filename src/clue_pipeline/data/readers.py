"""Readers of every supported raw format into the three contract tables.

Each reader returns :class:`RawDataset` (``interactions``, ``users``, ``items`` with the dtypes
of docs/architecture.md). Files are parsed by ``data.tables`` (pyarrow's multi-threaded CSV
reader); line-level diagnosis (which line, which field, what was expected) runs only once
something failed (``data.csv_diagnosis``), so the happy path on tens of millions of rows pays
for no Python-level checks.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clue_pipeline.data.csv_diagnosis import INT64_DIGITS, INT64_MAX, INT_PATTERN, separator_hint
from clue_pipeline.data.errors import DataError
from clue_pipeline.data.generic import read_generic_frames
from clue_pipeline.data.tables import (
    EVENT_TYPES,
    events_frame,
    nonblank_lines,
    read_header_csv,
    read_mapped_parquet,
    read_mapped_table,
    read_text_table,
    sorted_unique,
)
from clue_pipeline.data.validation import IngestOptions

__all__ = [
    "EVENT_TYPES",
    "READERS",
    "RawDataset",
    "ReaderSpec",
    "events_frame",
    "flags_to_genres",
    "known_formats",
    "read_dataset",
    "read_header_csv",
    "read_mapped_parquet",
    "read_mapped_table",
    "read_ml1m_movies",
    "read_ml1m_users",
    "read_text_table",
    "sorted_unique",
]


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
    lines, line_numbers = nonblank_lines(path, "utf-8")
    parts = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(lines))
    lengths = pc.list_value_length(parts).to_numpy()
    if (short := np.flatnonzero(lengths < 2)).size:
        raise DataError(
            "a user without items" + separator_hint(lines[int(short[0])].as_py(), " "),
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
    lines, line_numbers = nonblank_lines(path, "utf-8")
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
        numeric = pc.all(pc.match_substring_regex(labels, INT_PATTERN)).as_py()
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
    """Any CSV/parquet event log, its columns named by ``ingest.generic`` (``data.generic``)."""
    return RawDataset(*read_generic_frames(options))


# --- shared pieces of the formats ------------------------------------------------------------


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


def _users_of(interactions: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"user_id": sorted_unique(interactions["user_id"].to_numpy())})


def _items_of(interactions: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"item_id": sorted_unique(interactions["item_id"].to_numpy())})


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
    too_long = pc.greater(pc.utf8_length(flat), INT64_DIGITS).to_numpy(zero_copy_only=False)
    too_long |= pc.and_(
        pc.equal(pc.utf8_length(flat), INT64_DIGITS), pc.greater(flat, INT64_MAX)
    ).to_numpy(zero_copy_only=False)
    if too_long.any():
        first = int(np.flatnonzero(too_long)[0])
        raise DataError(
            f"{what} {position[first] + 1}: {flat[first].as_py()} is larger than a 64-bit id",
            file=path,
            line=int(line_numbers[row[first]]),
            expected=f"non-negative integer ids up to {INT64_MAX}",
        )
    values = pc.cast(flat, pa.int64()).to_numpy()
    return values, row.astype(np.int64), position


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
