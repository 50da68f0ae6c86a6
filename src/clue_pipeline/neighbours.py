"""Nearest users from an index: exact for small tables, HNSW (faiss) for large ones.

``embedding.nearest_users`` scores a user against every other user, one matrix product: right
for a few thousand users, but a served request would scan a million vectors. An HNSW graph
answers the same question in well under a millisecond at a recall a user cannot tell apart
(``benchmarks/results/ann_index.md``). Below ``exact_below`` users the exact flat index is
as fast and has no error, so ``auto`` keeps it there.

Similarity is cosine: vectors are L2-normalised before indexing and every query is
normalised the same way, so the inner product the index ranks by is the cosine. No Kedro,
no torch: ids and float vectors in, ids and similarities out. faiss is imported on first
use, so reading the settings (:class:`IndexConfig`) does not load it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

METHODS = ("auto", "exact", "hnsw")
FORMAT_VERSION = 1  # of the bytes `UserIndex.to_bytes` writes
SERIAL_BELOW = 8  # queries per call below which a search runs on one thread


class UnindexedUserError(KeyError):
    """A requested user id is not in the index (a ``KeyError``, as a missing row would be)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class IndexConfig:
    """How the user index is built and searched (``embed.index`` in conf/base).

    ``method`` auto picks exact below ``exact_below`` users and HNSW from there on.
    ``hnsw_m`` (links per node) and ``ef_construction`` trade build time and memory for graph
    quality; ``ef_search`` (candidates kept while searching) trades latency for recall.
    ``k`` is how many neighbours a request gets when it does not say. ``build_threads``:
    HNSW inserts in parallel in an order that varies run to run, so one thread is what makes
    the graph, and therefore the answers, reproducible; 0 lets faiss use every core. The HNSW
    defaults reach recall@10 >= 0.95 at 1M users (benchmarks/results/ann_index.md).
    """

    method: str = "auto"
    exact_below: int = 50_000
    hnsw_m: int = 16
    ef_construction: int = 64
    ef_search: int = 128
    k: int = 10
    build_threads: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"index.method = {self.method!r}: expected one of {list(METHODS)}")
        for name in ("exact_below", "build_threads"):
            _check_int(f"index.{name}", getattr(self, name), minimum=0)
        for name in ("hnsw_m", "ef_construction", "ef_search", "k"):
            _check_int(f"index.{name}", getattr(self, name), minimum=1)


@dataclass
class UserIndex:
    """A faiss index over unit user vectors, and the original user id of each row."""

    user_ids: np.ndarray  # (U,) int64, row i of the index is user_ids[i]
    index: Any  # faiss.Index (IndexFlatIP or IndexHNSWFlat, inner product)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids, dtype=np.int64)
        self._rows = _unique_index(self.user_ids)

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def method(self) -> str:
        return "hnsw" if hasattr(self.index, "hnsw") else "exact"

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` users nearest each query vector: user ids ``(Q, k)`` int64 and cosine
        similarities ``(Q, k)`` float32, most similar first, ties to the smaller id.

        Fewer than ``k`` users in the index, or an approximate search that found fewer,
        leave id -1 and similarity NaN in the last columns.
        """
        _check_int("k", k, minimum=1)
        queries = normalise(vectors, "query vectors", dim=self.dim)
        return self._search(queries, k, exclude_rows=None)

    def neighbours_of(self, user_ids: Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``search`` for users of the index, by id, each user left out of their own answer."""
        _check_int("k", k, minimum=1)
        rows = self.rows_of(user_ids)
        queries = self.index.reconstruct_batch(rows) if len(rows) else np.empty((0, self.dim))
        return self._search(np.asarray(queries, np.float32), k, exclude_rows=rows)

    def rows_of(self, user_ids: Sequence[int]) -> np.ndarray:
        """Row of each user id; an error naming the ids the index lacks."""
        wanted = np.asarray(list(user_ids))
        if wanted.size and wanted.dtype.kind not in "iu":
            raise ValueError(f"user ids {list(user_ids)[:5]!r}: expected integers")
        rows = self._rows.get_indexer(wanted.astype(np.int64)) if wanted.size else wanted
        missing = wanted[rows < 0] if wanted.size else wanted
        if len(missing):
            shown = ", ".join(str(int(i)) for i in missing[:5])
            more = ", ..." if len(missing) > 5 else ""
            span = f"ids {self.user_ids.min()}..{self.user_ids.max()}" if len(self) else "empty"
            raise UnindexedUserError(
                f"{len(missing)} of {len(wanted)} user id(s) not in the user index "
                f"([{shown}{more}]; "
                f"the index holds {len(self)} users, {span})"
            )
        return rows.astype(np.int64)

    def to_bytes(self) -> bytes:
        """The index and its user ids as one ``.npz`` blob (no pickle: safe to load)."""
        import faiss

        buffer = io.BytesIO()
        np.savez(
            buffer,
            format_version=np.int64(FORMAT_VERSION),
            user_ids=self.user_ids,
            index=faiss.serialize_index(self.index),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> UserIndex:
        import faiss

        with np.load(io.BytesIO(blob), allow_pickle=False) as parts:
            version = int(parts["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"user index format {version}; this version reads format {FORMAT_VERSION}"
                )
            return cls(parts["user_ids"], faiss.deserialize_index(parts["index"]))

    def save(self, path: Path | str) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path | str) -> UserIndex:
        return cls.from_bytes(Path(path).read_bytes())

    def _search(
        self, queries: np.ndarray, k: int, exclude_rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        extra = 0 if exclude_rows is None else 1
        wanted = min(k + extra, len(self))
        if wanted == 0 or len(queries) == 0:
            return _padded(np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0)), k)
        # faiss splits queries across threads; a few queries on more than one thread only add
        # the wake-up of the others, which on a loaded machine is milliseconds.
        with faiss_threads(1 if len(queries) < SERIAL_BELOW else 0):
            similarity, rows = self.index.search(queries, wanted)  # (Q, wanted) each
        if exclude_rows is not None:  # drop the user's own row, wherever it came
            own = rows == exclude_rows[:, None]
            rows = np.where(own, -1, rows)
        found = rows >= 0
        similarity = np.where(found, similarity, -np.inf).astype(np.float32)
        # Most similar first, then the smaller user id; misses (-1) last.
        ids = np.where(found, self.user_ids[np.maximum(rows, 0)], np.iinfo(np.int64).max)
        order = np.lexsort((ids, -similarity), axis=1)[:, :k]
        ids = np.take_along_axis(ids, order, axis=1)
        similarity = np.take_along_axis(similarity, order, axis=1)
        missed = ~np.isfinite(similarity)
        return _padded(np.where(missed, -1, ids), np.where(missed, np.nan, similarity), k)


def build_index(
    user_ids: Sequence[int] | np.ndarray, vectors: np.ndarray, config: IndexConfig | None = None
) -> UserIndex:
    """The index over ``vectors`` (U, d), row i the vector of ``user_ids[i]``.

    Vectors are L2-normalised first (a zero vector stays zero and is similar to no one). A
    NaN or infinite component is refused naming the row: faiss would index it silently and
    answer nonsense for every query that meets it.
    """
    import faiss

    config = config or IndexConfig()
    matrix = normalise(vectors, "vectors")
    ids = np.asarray(user_ids, dtype=np.int64)
    if len(ids) != len(matrix):
        raise ValueError(f"user_ids: {len(ids)} ids for {len(matrix)} vectors")
    method = choose_method(len(matrix), config)
    dim = matrix.shape[1]
    if method == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
    with faiss_threads(config.build_threads):
        index.add(matrix)
    return UserIndex(ids, index)


def choose_method(num_users: int, config: IndexConfig) -> str:
    """``exact`` or ``hnsw``: the configured one, or by size when ``auto``."""
    if config.method != "auto":
        return config.method
    return "exact" if num_users < config.exact_below else "hnsw"


def normalise(vectors: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """Float32 C-contiguous unit rows of a 2-D array, refused naming ``name`` if not finite."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        expected = f"(n, {dim})" if dim is not None else "(n, d)"
        raise ValueError(f"{name}: shape {matrix.shape}; expected {expected}")
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{name}: {bad.size} row(s) hold NaN or infinite values (rows "
            f"{bad[:5].tolist()}{', ...' if bad.size > 5 else ''}); a vector must be finite"
        )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true ``k`` neighbours (``truth`` (Q, k)) that ``found`` (Q, k) holds."""
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Runs a block with faiss's OpenMP thread count set to ``n`` (0: leave it), then restores
    the previous count."""
    import faiss

    before = faiss.omp_get_max_threads()
    if n:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _padded(ids: np.ndarray, similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    short = k - ids.shape[1]
    if short > 0:
        ids = np.pad(ids, ((0, 0), (0, short)), constant_values=-1)
        similarity = np.pad(similarity, ((0, 0), (0, short)), constant_values=np.nan)
    return ids.astype(np.int64), similarity.astype(np.float32)


def _unique_index(user_ids: np.ndarray) -> pd.Index:
    rows = pd.Index(user_ids)
    if not rows.is_unique:
        repeated = rows[rows.duplicated()].unique()[:5].tolist()
        raise ValueError(f"user_ids: {repeated} appear more than once")
    return rows


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} = {value!r}: expected an integer >= {minimum}")
