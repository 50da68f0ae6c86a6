"""User vectors for the people who use them: one row per user, and each user's nearest users.

A table of vectors is a plain frame: ``user_id`` (the dataset's original id, int64) and the
columns ``u0 .. u{d-1}`` (float32), the same columns the MLflow pyfunc model returns, so a
vector read from the table and one served by the model are interchangeable.

There is one way to turn model inputs into vectors, ``encode_tokens``: the pyfunc model
(``clue_pipeline.tracking``) and the ``embed`` pipeline both call it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from clue_pipeline.models.representation import user_vectors
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.training.loop import DEVICES, resolve_device

USER_ID = "user_id"
ITEMS = "items"
VECTOR_PREFIX = "u"
_VECTOR_COLUMN = re.compile(rf"^{VECTOR_PREFIX}(\d+)$")
MAX_ROWS_NAMED = 5  # rows an error message lists before "... n more"
MAX_IDS_NAMED = 5


class UnknownItemsError(MlflowException):
    """A served request with users of whom the model knows no item (HTTP 400 when served)."""


class UnknownUserError(KeyError):
    """A requested user id is not in the vectors table (a ``KeyError``, as pandas' ``.loc``)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class EmbedConfig:
    """How the encoder runs over all users: batch size bounds memory, device picks the chip.

    ``device`` is ``auto`` (CUDA where available), ``cpu`` or ``cuda``.
    """

    batch_size: int = 1024
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool):
            raise ValueError(f"embed.batch_size = {self.batch_size!r}: expected an integer >= 1")
        if self.batch_size < 1:
            raise ValueError(f"embed.batch_size = {self.batch_size!r}: expected an integer >= 1")
        if self.device not in DEVICES:
            raise ValueError(f"embed.device = {self.device!r}: expected one of {list(DEVICES)}")


def user_vector_table(
    encoder: torch.nn.Module, sequences: pd.DataFrame, config: EmbedConfig
) -> pd.DataFrame:
    """Every user of ``sequences`` with the vector of their most recent ``max_len`` items.

    The input is the user's whole stored sequence, not a pre-training corpus. The corpora hold
    back the items evaluation is scored on (next-item's validation and test targets, the
    cold-start target domain) so that no test answer leaks into training. Someone using the
    vectors (search, segments, a downstream model) wants each user as they are now, and their
    latest items say the most about that; holding them back would describe the user as they
    were two steps ago. The one thing these vectors must not do is score the next-item test
    targets: they have seen them.
    """
    _require_columns(sequences, (USER_ID, ITEMS), "sequences")
    encoder_config = encoder.config
    width = encoder_config.max_len + 1
    tokens = (
        model_inputs(sequences[ITEMS], encoder_config.max_len, encoder_config.tokens.user)
        if len(sequences)
        else np.zeros((0, width), dtype=np.int64)  # arrow cannot type an empty object column
    )
    encoder.to(embedding_device(config.device))
    vectors = encode_tokens(encoder, tokens, config.batch_size)
    return vectors_to_frame(sequences[USER_ID].to_numpy(np.int64), vectors)


def reject_rows_without_known_items(
    items: pd.Series, tokens: np.ndarray, unknown: np.ndarray, known_ids: pd.Index
) -> None:
    """Refuse a request holding a user with no item id the model knows.

    Such a row (an empty sequence, or ids only of another kind: internal tokens, another
    dataset's ids) would get the vector of ``[UR]`` alone, the same plausible vector for
    everyone, and the client would never learn its ids were wrong. The error names the rows
    and their ids; the scoring server answers it with HTTP 400. A row with at least one known
    id is answered from its known ids (the unknown ones are counted in the server's log).
    """
    has_known = (np.asarray(tokens)[:, :-1] != 0).any(axis=1)
    bad = np.flatnonzero(~has_known)
    if bad.size == 0:
        return
    values = items.to_numpy(dtype=object)
    described = []
    for row in bad[:MAX_ROWS_NAMED]:
        sequence = values[row]
        if sequence is None or len(sequence) == 0:
            described.append(f"row {row}: empty sequence")
        else:
            shown = ", ".join(str(int(i)) for i in list(sequence)[:MAX_IDS_NAMED])
            more = ", ..." if len(sequence) > MAX_IDS_NAMED else ""
            described.append(f"row {row}: unknown item id(s) [{shown}{more}]")
    if bad.size > MAX_ROWS_NAMED:
        described.append(f"... {bad.size - MAX_ROWS_NAMED} more row(s)")
    span = f"{known_ids.min()}..{known_ids.max()}" if len(known_ids) else "none"
    raise UnknownItemsError(
        f"{bad.size} of {len(values)} row(s) hold no item id the model knows ("
        + "; ".join(described)
        + f"). Expected per row at least one original item id of the training data "
        f"({len(known_ids)} known ids, {span}); the vector of an empty history would be "
        "the same for every user",
        error_code=INVALID_PARAMETER_VALUE,
    )


def embedding_device(device: str) -> torch.device:
    """The device of ``embed.device``; asking for CUDA on a machine without it is an error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("embed.device = 'cuda' but no CUDA device is available; use auto or cpu")
    return resolve_device(device)


def encode_tokens(encoder: torch.nn.Module, tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """User vectors (U, d) float32 of a model-input batch (U, max_len + 1), on the encoder's device.

    Eval mode and no gradients (dropout off: the same history always gives the same vector),
    in length-sorted batches of ``batch_size`` rows so memory stays bounded for any U.
    """
    if len(tokens) == 0:
        return np.zeros((0, encoder.config.hidden), dtype=np.float32)
    return user_vectors(encoder, np.asarray(tokens, dtype=np.int64), batch_size).numpy()


def vectors_to_frame(user_ids: np.ndarray, vectors: np.ndarray) -> pd.DataFrame:
    """``user_id`` int64 and one float32 column per dimension, ``u0 .. u{d-1}``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(user_ids):
        raise ValueError(
            f"vectors_to_frame: vectors of shape {vectors.shape} for {len(user_ids)} user ids; "
            "expected (users, dim)"
        )
    columns = {f"{VECTOR_PREFIX}{i}": vectors[:, i] for i in range(vectors.shape[1])}
    return pd.DataFrame({USER_ID: np.asarray(user_ids, dtype=np.int64), **columns})


def vector_columns(vectors: pd.DataFrame) -> list[str]:
    """The vector columns ``u0 .. u{d-1}`` of a table, in dimension order, checked complete."""
    numbered = sorted(
        (int(match.group(1)), name)
        for name in map(str, vectors.columns)
        if (match := _VECTOR_COLUMN.match(name))
    )
    if not numbered or [n for n, _ in numbered] != list(range(len(numbered))):
        raise ValueError(
            f"user vectors table: columns {list(vectors.columns)}; expected {USER_ID!r} and "
            f"{VECTOR_PREFIX}0 .. {VECTOR_PREFIX}{{d-1}} with no gap"
        )
    return [name for _, name in numbered]


def normalised_matrix(vectors: pd.DataFrame) -> np.ndarray:
    """The vectors as a float32 (U, d) matrix of unit rows (a zero vector stays zero)."""
    matrix = vectors[vector_columns(vectors)].to_numpy(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def similar_users(vectors: pd.DataFrame, user_id: int, k: int) -> pd.DataFrame:
    """The ``k`` users whose vectors are closest in cosine to ``user_id``'s, the user excluded.

    Columns ``user_id``, ``similarity`` (cosine, float64), most similar first; ties go to the
    smaller user id so the answer does not depend on row order. Fewer than ``k`` rows when the
    table has fewer other users.
    """
    table = nearest_users(vectors, [user_id], k)
    return table[[USER_ID, "similarity"]].reset_index(drop=True)


def nearest_users(vectors: pd.DataFrame, user_ids: Sequence[int], k: int) -> pd.DataFrame:
    """``similar_users`` for several users at once, in one matrix product.

    Columns ``query_user_id``, ``rank`` (1 = most similar), ``user_id``, ``similarity``.
    """
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ValueError(f"similar users: k = {k!r}; expected an integer >= 1")
    _require_columns(vectors, (USER_ID,), "user vectors table")
    ids = vectors[USER_ID].to_numpy(np.int64)
    rows = _rows_of(ids, user_ids)
    matrix = normalised_matrix(vectors)

    scores = (matrix[rows] @ matrix.T).astype(np.float64)  # (Q, U)
    scores[np.arange(len(rows)), rows] = -np.inf  # never one's own neighbour
    k = min(k, len(ids) - 1)
    if k == 0 or len(rows) == 0:
        return _neighbour_frame(np.empty(0, np.int64), np.empty(0, np.int64), ids, np.empty(0))
    candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, k), unordered
    chosen = np.take_along_axis(scores, candidates, axis=1)
    # Order each query's k by similarity (desc), then user id (asc): lexsort's last key leads.
    order = np.lexsort((ids[candidates], -chosen), axis=1)
    candidates = np.take_along_axis(candidates, order, axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    return _neighbour_frame(np.repeat(rows, k), candidates.ravel(), ids, chosen.ravel(), k)


def _neighbour_frame(
    query_rows: np.ndarray,
    neighbour_rows: np.ndarray,
    ids: np.ndarray,
    similarity: np.ndarray,
    k: int = 1,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_user_id": ids[query_rows],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), len(query_rows) // k),
            USER_ID: ids[neighbour_rows],
            "similarity": similarity.astype(np.float64),
        }
    )


def _rows_of(ids: np.ndarray, user_ids: Sequence[int]) -> np.ndarray:
    """Row of each requested user id, with an error naming the ids the table lacks."""
    index = pd.Index(ids)
    if not index.is_unique:
        duplicated = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"user vectors table: user_id {duplicated} appear more than once")
    wanted = np.asarray(list(user_ids))
    if len(wanted) == 0:
        return np.empty(0, np.int64)
    if wanted.dtype.kind not in "iu":
        raise ValueError(f"similar users: user ids {list(user_ids)!r}; expected integers")
    rows = index.get_indexer(wanted.astype(np.int64))
    missing = wanted[rows < 0]
    if len(missing):
        raise UnknownUserError(
            f"similar users: user_id {missing[:5].tolist()} not in the user vectors table "
            f"({len(ids)} users, ids {ids.min() if len(ids) else '-'}..."
            f"{ids.max() if len(ids) else '-'})"
        )
    return rows


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(frame.columns)}")
