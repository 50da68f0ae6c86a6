"""Sequences (lists of tokens) to the padded model-input arrays of docs/architecture.md.

Everything works on a flat token array plus offsets, so building the inputs of a million users
is a handful of numpy operations rather than a Python loop over users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import pyarrow as pa


def flatten(lists: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(flat tokens int64, offsets int64 of length U + 1) of a column of token lists."""
    import pyarrow as pa  # here, so the torch-only modules import without it (GPU check)

    array = pa.array(lists, type=pa.list_(pa.int64())) if not isinstance(lists, pa.Array) else lists
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    offsets = np.asarray(array.offsets, dtype=np.int64)
    flat = np.asarray(array.values.to_numpy(zero_copy_only=False), dtype=np.int64)
    base = offsets[0]
    return flat[base : offsets[-1]], offsets - base


def window(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, pad: int = 0
) -> np.ndarray:
    """The last ``width`` tokens of each ``flat[start:end]``, left-padded: shape (U, width)."""
    index = ends[:, None] - width + np.arange(width)[None, :]
    valid = index >= starts[:, None]
    out = np.where(valid, flat[np.clip(index, 0, max(len(flat) - 1, 0))], pad)
    return out.astype(np.int64, copy=False)


def model_inputs(lists: Sequence, max_len: int, user_token: int, drop_last: int = 0) -> np.ndarray:
    """Model input (U, max_len + 1): the most recent ``max_len`` tokens, left-padded, then [UR].

    ``drop_last`` leaves out that many final tokens of every list first (e.g. the held-out item).
    """
    flat, offsets = flatten(lists)
    ends = offsets[1:] - drop_last
    items = window(flat, offsets[:-1], np.maximum(ends, offsets[:-1]), max_len)
    return np.concatenate([items, np.full((len(items), 1), user_token, dtype=np.int64)], axis=1)


def next_item_training_arrays(
    train_lists: Sequence, max_len: int, user_token: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and per-position targets for next-item training on the training part ``s``.

    Input is ``s[:-1]`` then [UR]; each item position predicts the item after it and the [UR]
    position predicts ``s[-1]``, the item after the whole input — the same job it has at
    evaluation time, when the input is all of ``s`` and the target the held-out item.
    Targets are 0 (ignored) on padding.
    """
    flat, offsets = flatten(train_lists)
    starts, ends = offsets[:-1], offsets[1:]
    inputs = window(flat, starts, ends - 1, max_len)
    targets = window(flat, starts + 1, ends, max_len)
    tokens = np.concatenate([inputs, np.full((len(inputs), 1), user_token, np.int64)], axis=1)
    last = flat[ends - 1][:, None]
    return tokens, np.concatenate([targets, last], axis=1)


def append_items(lists: Sequence, extra: np.ndarray) -> pa.ListArray:
    """Each list followed by its extra token (the validation item before the test input)."""
    import pyarrow as pa

    flat, offsets = flatten(lists)
    merged = np.insert(flat, offsets[1:], np.asarray(extra, dtype=np.int64))
    return pa.ListArray.from_arrays(offsets + np.arange(len(offsets)), merged)


def trim_padding(tokens: torch.Tensor, *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the columns that are padding in every row (inputs are left-padded).

    The encoders count positions from the right, so this changes no output; with batches of
    similar length (``TrainConfig.bucket_by_length``) it skips most of the padding's work.
    ``aligned`` tensors (per-position targets) are cut the same way.
    """
    width = int((tokens != 0).sum(dim=1).max())
    return (tokens[:, -width:], *(t[:, -width:] for t in aligned))
