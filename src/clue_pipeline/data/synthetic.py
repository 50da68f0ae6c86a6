"""A synthetic rating log shaped like MovieLens 25M, to measure ingest and sequence building at
full scale without the real files.

What the pipelines' cost depends on is copied from the real log: many users, a Zipf item
popularity, per-user lengths with a long tail above a floor, sparse item ids unrelated to
popularity, timestamps with ties, and no repeated (user, item) pair. The values themselves
mean nothing. Everything is drawn from one seeded generator, vectorised, so the same shape and
size give the same log, row for row.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = (
    *("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary"),
    *("Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance"),
    *("Sci-Fi", "Thriller", "War", "Western"),
)


@dataclass(frozen=True)
class LogShape:
    """The shape of the log; the defaults are MovieLens 25M's (162,541 users, 59,047 rated
    movies, at least 20 ratings per user, median ~71, mean ~154, ids up to 209,171,
    1995..2019)."""

    users: int = 160_000
    items: int = 60_000
    min_length: int = 20
    length_median_excess: float = 51.0  # median length above min_length
    length_sigma: float = 1.39  # log-normal spread of that excess
    max_length: int = 9_000
    zipf_exponent: float = 1.0
    max_item_id: int = 210_000
    first_time: int = 788_918_400  # 1995-01-01
    last_time: int = 1_574_000_000  # 2019-11
    time_quantum_s: int = 10  # ratings entered in one go share a timestamp
    seed: int = 2021
    oversample: float = 1.15  # first draw per user, so that few redraws follow deduplication
    zipf_draw_rounds: int = 3  # later rounds draw uniformly: heavy users exhausted the head
    max_draw_rounds: int = 30


ML_25M = LogShape()


@dataclass
class SyntheticLog:
    """The three tables, with MovieLens' column names: ``interactions`` (userId, movieId,
    rating, timestamp; sorted by user, not by time), ``items`` (movieId, title, genres) and
    ``users`` (userId, gender, age, occupation, as ML-1M codes them)."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame


def movielens_like(n_interactions: int, shape: LogShape = ML_25M) -> SyntheticLog:
    """A log of ``n_interactions`` ratings (fewer only if ``max_draw_rounds`` cannot fill every
    user's length with distinct items) of ``shape``."""
    if n_interactions < shape.min_length * shape.users:
        raise ValueError(
            f"n_interactions {n_interactions} is below min_length x users "
            f"({shape.min_length} x {shape.users})"
        )
    rng = np.random.default_rng(shape.seed)
    users, ranks = _pairs(rng, shape, n_interactions)
    item_ids = np.sort(rng.choice(np.arange(1, shape.max_item_id + 1), shape.items, replace=False))
    rank_to_id = rng.permutation(item_ids)  # popularity unrelated to the id, as in MovieLens
    times = _timestamps(rng, shape, users)
    interactions = pd.DataFrame(
        {
            "userId": users + 1,
            "movieId": rank_to_id[ranks],
            "rating": rng.integers(1, 11, len(users)) / 2.0,
            "timestamp": times,
        }
    )
    items = pd.DataFrame(
        {
            "movieId": item_ids,
            "title": [f"Movie {i}" for i in item_ids],
            "genres": _genres(rng, shape.items)[np.argsort(rank_to_id)],
        }
    )
    return SyntheticLog(interactions, items, _user_table(rng, shape.users))


def _pairs(rng: np.random.Generator, shape: LogShape, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, popularity rank) of every rating, distinct pairs, sorted by user then rank."""
    n_users, n_items = shape.users, shape.items
    lengths = _user_lengths(rng, shape, total)
    popularity = 1.0 / np.arange(1, n_items + 1) ** shape.zipf_exponent
    cdf = np.cumsum(popularity / popularity.sum())
    keys = np.empty(0, dtype=np.int64)  # user * n_items + rank
    wanted = np.ceil(lengths * shape.oversample).astype(np.int64)
    for round_ in range(shape.max_draw_rounds):  # redraw what deduplication removed
        users = np.repeat(np.arange(n_users, dtype=np.int64), wanted)
        if round_ < shape.zipf_draw_rounds:
            ranks = np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_items - 1)
        else:
            ranks = rng.integers(0, n_items, len(users))
        keys = np.unique(np.concatenate((keys, users * n_items + ranks)))
        wanted = np.maximum(lengths - np.bincount(keys // n_items, minlength=n_users), 0)
        if not wanted.any():
            break
    keys = _trim_to_lengths(keys // n_items, keys, lengths, rng)
    return keys // n_items, keys % n_items


def _user_lengths(rng: np.random.Generator, shape: LogShape, total: int) -> np.ndarray:
    """Lengths >= min_length with a log-normal tail, summing exactly to ``total``."""
    low, high = shape.min_length, shape.max_length
    excess = rng.lognormal(np.log(shape.length_median_excess), shape.length_sigma, shape.users)
    excess = np.minimum(excess, high - low)
    excess *= (total - low * shape.users) / excess.sum()
    lengths = np.minimum(low + np.floor(excess).astype(np.int64), high)
    short = total - int(lengths.sum())
    room = np.flatnonzero(lengths < high)
    lengths[rng.choice(room, short, replace=False)] += 1
    return lengths


def _trim_to_lengths(
    users: np.ndarray, keys: np.ndarray, lengths: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Drop random surplus pairs of over-drawn users; ``keys`` sorted, grouped by user."""
    order = np.lexsort((rng.random(len(keys)), users))
    change = np.flatnonzero(np.diff(users[order])) + 1
    starts = np.concatenate(([0], change))
    sizes = np.diff(np.concatenate((starts, [len(keys)])))
    rank = np.arange(len(keys)) - np.repeat(starts, sizes)
    return np.sort(keys[order][rank < lengths[users[order]]])


def _timestamps(rng: np.random.Generator, shape: LogShape, users: np.ndarray) -> np.ndarray:
    """Each user active from a random start over a span that grows with their length,
    rounded to ``time_quantum_s`` so that ratings entered together tie."""
    start = rng.integers(shape.first_time, shape.last_time - 86_400, shape.users)
    span = np.minimum(
        shape.last_time - start, np.bincount(users) * rng.lognormal(7.5, 1.5, shape.users)
    ).astype(np.int64)
    quantum = shape.time_quantum_s
    offsets = (rng.random(len(users)) * span[users]).astype(np.int64)
    return start[users] + offsets // quantum * quantum


def _genres(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """One to three distinct genres per item, ``|``-joined, in popularity-rank order."""
    count = rng.integers(1, 4, n_items)
    picks = np.array(GENRES, dtype=object)[rng.integers(0, len(GENRES), int(count.sum()))]
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    joined = ["|".join(dict.fromkeys(picks[s : s + c])) for s, c in zip(starts, count, strict=True)]
    return np.array(joined, dtype=object)


def _user_table(rng: np.random.Generator, n_users: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "userId": np.arange(1, n_users + 1),
            "gender": rng.choice(["F", "M"], n_users, p=[0.28, 0.72]),
            "age": rng.choice([1, 18, 25, 35, 45, 50, 56], n_users),
            "occupation": rng.integers(0, 21, n_users),
        }
    )


def write_log(n_interactions: int, folder: Path) -> None:
    """The log as the three parquet files the `scale` run-environment reads, written into a
    sibling temporary folder first, so an interrupted run never leaves a partial log behind."""
    log = movielens_like(n_interactions)
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("interactions", "items", "users"):
        getattr(log, name).to_parquet(staging / f"{name}.parquet", index=False)
    (staging / f"done-{n_interactions}").write_text(f"{len(log.interactions)} interactions\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    print(f"wrote {len(log.interactions):,} interactions of {len(log.users):,} users to {folder}")


def ensure_log(folder: Path, n_interactions: int, regenerate: bool = False) -> bool:
    """The log in ``folder``, drawn by a child process (so a caller measuring its own memory
    does not count the draw) unless ``folder`` holds it already; True when it was drawn."""
    if not regenerate and (Path(folder) / f"done-{n_interactions}").exists():
        return False
    command = [sys.executable, "-m", __name__, str(folder), "--interactions", str(n_interactions)]
    subprocess.run(command, check=True)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an ML-25M-shaped synthetic log.")
    parser.add_argument("folder", type=Path, help="e.g. data/01_raw/ml25m-like")
    parser.add_argument("--interactions", type=int, default=25_000_000)
    args = parser.parse_args(argv)
    write_log(args.interactions, args.folder)


if __name__ == "__main__":
    main()
