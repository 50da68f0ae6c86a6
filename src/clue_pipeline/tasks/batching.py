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


def prefix_row_bounds(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per (prefix, next item) of each user's ``flat[start:end]``, as flat bounds.

    Row ``r`` reads ``flat[row_start:row_end]`` and predicts ``flat[row_end]``; a user of n
    items gives n - 1 rows (prefixes of length 1..n-1). Two int64 per row instead of a padded
    matrix, so the layout costs 16 bytes per interaction (ML-25M: ~0.4 GB); the windows are cut
    per batch by :func:`prefix_batch`.
    """
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    per_user = np.maximum(ends - starts - 1, 0)
    owner = np.repeat(np.arange(len(starts)), per_user)
    first_row = np.cumsum(per_user) - per_user
    prefix_len = np.arange(len(owner), dtype=np.int64) - first_row[owner] + 1
    row_starts = starts[owner]
    return row_starts, row_starts + prefix_len


def prefix_batch(
    flat: torch.Tensor, row_starts: torch.Tensor, row_ends: torch.Tensor, max_len: int, user: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model input and targets of prefix rows: the last ``max_len`` items of each prefix, then
    [UR]; the only target is the next item, at [UR] (0 elsewhere).

    Cut to the batch's longest prefix, like ``length_batching.trim_padding``, so no column is
    padding only.
    """
    width = int(min(max_len, int((row_ends - row_starts).max()))) if len(row_ends) else 0
    index = row_ends[:, None] - width + torch.arange(width, device=flat.device)[None, :]
    items = torch.where(index >= row_starts[:, None], flat[index.clamp(min=0)], 0)
    ur = torch.full((len(items), 1), user, dtype=items.dtype, device=items.device)
    targets = torch.zeros((len(items), width + 1), dtype=items.dtype, device=items.device)
    targets[:, -1] = flat[row_ends]
    return torch.cat([items, ur], dim=1), targets


def append_items(lists: Sequence, extra: np.ndarray) -> pa.ListArray:
    """Each list followed by its extra token (the validation item before the test input)."""
    import pyarrow as pa

    flat, offsets = flatten(lists)
    merged = np.insert(flat, offsets[1:], np.asarray(extra, dtype=np.int64))
    return pa.ListArray.from_arrays(offsets + np.arange(len(offsets)), merged)
