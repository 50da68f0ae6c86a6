"""Batches of similar length, so left-padded rows cost about their own length, not max_len.

Every encoder counts positions from the right and padding never reaches a real position
(docs/architecture.md), so cutting the all-padding columns off a batch changes no output. Four
places use that: the training loop orders rows into batches of similar length
(:func:`bucketed_order`), each step cuts its batch (:func:`trim_padding`), evaluation runs
length-sorted batches (:func:`by_length`), and a model encodes a mixed batch in groups
(:func:`length_groups`). They all live here, torch only, below models, tasks and the loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from clue_pipeline.data.tokens import PAD


def trim_padding(tokens: torch.Tensor, *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the columns that are padding in every row (inputs are left-padded).

    With batches of similar length (``TrainConfig.bucket_by_length``) this skips most of the
    padding's work. ``aligned`` tensors (per-position targets) are cut the same way.
    """
    width = int((tokens != PAD).sum(dim=1).max())
    return (tokens[:, -width:], *(t[:, -width:] for t in aligned))


def bucketed_order(
    order: torch.Tensor, lengths: torch.Tensor, batch_size: int, span: int, seed: int
) -> torch.Tensor:
    """``order`` regrouped into batches of similar length, batches in a seeded random order.

    Within each span of ``span`` batches the rows are sorted by length; the full batches of
    all spans are then shuffled and the ragged tail (if any) stays last, where ``drop_last``
    drops it. Seeded, so a resumed run recomputes the same batches.
    """
    chunk = batch_size * max(1, span)
    regrouped = torch.cat(
        [part[torch.argsort(lengths[part], stable=True)] for part in torch.split(order, chunk)]
    )
    full = len(regrouped) // batch_size
    generator = torch.Generator().manual_seed(seed)
    batches = torch.randperm(full, generator=generator)
    head = regrouped[: full * batch_size].view(full, batch_size)[batches].reshape(-1)
    return torch.cat([head, regrouped[full * batch_size :]])


def by_length(
    fn: Callable[..., torch.Tensor],
    tokens: np.ndarray,
    batch_size: int,
    device: torch.device | str,
    *aligned: np.ndarray,
) -> torch.Tensor:
    """``fn`` over row batches of similar length, each cut to its longest row; input order kept.

    On short-sequence data (Amazon: ~9 items of 50) this skips most of the work of a plain
    batched pass. ``aligned`` per-row arrays (e.g. each row's target) reach ``fn`` as tensors
    cut to the same rows: ``fn(batch, *aligned_rows)``. Floating outputs come back as float32
    (also those computed in bf16), integer ones unchanged.
    """
    lengths = (tokens != PAD).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    outputs = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        (batch,) = trim_padding(torch.as_tensor(tokens[rows], device=device))
        extra = (torch.as_tensor(values[rows], device=device) for values in aligned)
        output = fn(batch, *extra)
        outputs.append((output.float() if output.is_floating_point() else output).cpu())
    if not outputs:
        return torch.empty(0)
    result = torch.empty((len(tokens), *outputs[0].shape[1:]), dtype=outputs[0].dtype)
    result[torch.as_tensor(order)] = torch.cat(outputs)
    return result


def length_groups(tokens: torch.Tensor, min_width: int = 4) -> list[tuple[torch.Tensor, int]]:
    """Rows of a left-padded batch grouped by length: [(row indices, width)], each row in the
    narrowest of the widths ``min_width``, 2 x ``min_width``, ... (and the batch's own width)
    that holds its tokens, so a group cut to its width pads at most as much as it holds."""
    width = tokens.shape[1]
    lengths = (tokens != PAD).sum(dim=1)
    widths = [min_width]
    while widths[-1] < width:
        widths.append(min(2 * widths[-1], width))
    group = torch.bucketize(lengths, torch.tensor(widths, device=tokens.device))
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group, minlength=len(widths)).tolist()
    groups, start = [], 0
    for group_width, count in zip(widths, counts, strict=True):
        if count:
            groups.append((order[start : start + count], group_width))
            start += count
    return groups
