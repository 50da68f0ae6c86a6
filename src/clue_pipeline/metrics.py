"""Evaluation metrics: full-ranking recommendation metrics and classification metrics.

Ranking is always over ALL items (never sampled negatives): sampled metrics are known to
reorder methods, and the paper's comparison is only meaningful under full ranking.

Conventions (stated in every report that uses them):

- Columns of ``item_matrix`` / ``scores`` are item indices ``0..N-1``; callers map tokens
  ``1..N`` to columns ``token - 1``.
- The rank of a target is 0-based: the number of other items placed above it.
- **Ties** are broken *pessimistically* by default: every other item whose score equals
  the target's is counted as ranked above it (``ties="pessimistic"``). A collapsed model that
  scores all items equally therefore gets rank ``N - 1`` and no credit. ``ties="optimistic"``
  counts only strictly higher scores (the convention of the SASRec / S3-Rec evaluation code).
  RecBole's full-sort evaluation takes ``torch.topk`` of the scores, so a tie is resolved by
  ``topk``'s internal order, which is unspecified; with continuous fp32 scores from a trained
  model ties practically never occur and all three conventions agree. bf16 scores, on the
  other hand, tie often enough to move most users' ranks (benchmarks/results/eval_speed.md),
  so scores are computed in the vectors' own precision and callers should pass fp32.
- **History exclusion** is off unless ``exclude`` is given. When it is given, every listed
  item is removed from that user's ranking, the target too when it is listed (a repeated
  consumption): such a target is not ranked at all, gets rank ``NOT_RANKED`` and counts as a
  miss at every cut-off. This is the protocol of the published trainers on the S3-Rec files
  (S3-Rec's and BSARec's ``trainers.py``), which zero every item the user had before the
  target, and of RecBole, which masks them to ``-inf``. Masked items get ``-inf`` here,
  not the published trainers' ``0``: with unbounded dot-product scores a zeroed item still
  outranks every negative score, so ``0`` only removes an item when at least ``k`` others
  score above zero; ``-inf`` removes it always, which is what the zeroing is meant to do
  (docs/quality-grid.md, "Ranking protocols"). ``exclude`` is either a tuple
  ``(indptr, indices)`` (CSR; always read so) or a list of per-user index tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

Ties = Literal["pessimistic", "optimistic"]
Exclude = tuple[torch.Tensor, torch.Tensor] | Sequence[torch.Tensor]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
# The rank of a target that history exclusion removed from the ranking: beyond every cut-off.
NOT_RANKED = torch.iinfo(torch.int64).max
# Users per score block when ``chunk_size`` is None. On CPU a small block keeps the (N, chunk)
# scores in cache (fastest of 64..1024 in benchmarks/results/eval_speed.md); on CUDA a large
# block keeps the number of kernel launches small.
DEFAULT_CHUNK_SIZE = {"cpu": 64, "cuda": 4096}


def ranking_metrics(
    user_vectors: torch.Tensor,
    item_matrix: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    exclude: Exclude | None = None,
    device: torch.device | str | None = None,
    ties: Ties = "pessimistic",
) -> dict[str, float | int | bool]:
    """Recall@k, MRR@k and NDCG@k of dot-product scores over all items.

    Scores are computed block by block (``chunk_size`` users at a time) as
    ``U_chunk @ I^T`` so that the full ``(U, N)`` matrix never exists in memory.

    Args:
        user_vectors: ``(U, d)`` float.
        item_matrix: ``(N, d)`` float, row ``i`` = item index ``i``.
        targets: ``(U,)`` int, one held-out item index per user in ``0..N-1``.
        ks: cut-offs.
        chunk_size: users per score block; None picks ``DEFAULT_CHUNK_SIZE`` by device.
        exclude: items to remove from each user's ranking (history), either CSR-like
            ``(indptr (U+1,), indices)`` or a list of ``U`` 1-D index tensors.
        device: where to compute; defaults to the device of ``user_vectors``.
        ties: ``"pessimistic"`` or ``"optimistic"`` (see the module docstring).

    Returns:
        ``{"recall@k", "mrr@k", "ndcg@k" for each k, "n_users", "history_excluded"}``.
    """
    ranks = target_ranks(
        user_vectors,
        item_matrix,
        targets,
        chunk_size=chunk_size,
        exclude=exclude,
        device=device,
        ties=ties,
    )
    return {**metrics_from_ranks(ranks, ks), "history_excluded": exclude is not None}


def ranking_metrics_from_scores(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    exclude: Exclude | None = None,
    ties: Ties = "pessimistic",
) -> dict[str, float | int | bool]:
    """The same metrics from a ready ``(U, N)`` score matrix (small cases, non-dot scorers)."""
    if scores.dim() != 2:
        raise ValueError(
            f"scores: expected a 2-D (users, items) tensor, got shape {tuple(scores.shape)}"
        )
    num_users, num_items = scores.shape
    targets = _check_targets(targets, num_users, num_items, scores.device)
    csr = None if exclude is None else _to_csr(exclude, num_users, num_items, scores.device)
    if csr is not None:
        scores = scores.clone()  # masking writes -inf in place; keep the caller's scores intact
    flags = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    with torch.no_grad():
        ranks = _block_ranks(scores.detach(), targets, csr, 0, ties, flags, item_dim=1)
    return {**metrics_from_ranks(ranks, ks), "history_excluded": exclude is not None}


def target_ranks(
    user_vectors: torch.Tensor,
    item_matrix: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int | None = None,
    exclude: Exclude | None = None,
    device: torch.device | str | None = None,
    ties: Ties = "pessimistic",
) -> torch.Tensor:
    """0-based rank of each user's target among all items, ``(U,)`` int64 on the CPU.

    Exposed so that reports can keep per-user ranks (for confidence intervals or paired
    tests) without recomputing scores. A target that ``exclude`` removes gets ``NOT_RANKED``.
    """
    if user_vectors.dim() != 2 or item_matrix.dim() != 2:
        raise ValueError(
            "user_vectors and item_matrix: expected 2-D (U, d) and (N, d), got "
            f"{tuple(user_vectors.shape)} and {tuple(item_matrix.shape)}"
        )
    if user_vectors.shape[1] != item_matrix.shape[1]:
        raise ValueError(
            f"user_vectors has d={user_vectors.shape[1]} but item_matrix has "
            f"d={item_matrix.shape[1]}; both must share the embedding size"
        )
    device = torch.device(device) if device is not None else user_vectors.device
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE.get(device.type, DEFAULT_CHUNK_SIZE["cpu"])
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
    num_users, num_items = user_vectors.shape[0], item_matrix.shape[0]
    targets = _check_targets(targets, num_users, num_items, device)
    csr = None if exclude is None else _to_csr(exclude, num_users, num_items, device)
    items = item_matrix.detach().to(device)
    users = user_vectors.detach()
    dtype = torch.promote_types(users.dtype, items.dtype)
    items = items.to(dtype).contiguous()  # (N, d)
    ranks = torch.empty(num_users, dtype=torch.long, device=device)
    nan_targets = torch.zeros(num_users, dtype=torch.bool, device=device)
    # Scores are built item-major, (N, chunk) = I @ U_chunk^T: on CPU this product runs about
    # twice as fast as U_chunk @ I^T for these thin shapes. The buffers are reused because a
    # fresh multi-MB tensor per chunk costs page faults comparable to the product itself.
    block = min(chunk_size, max(num_users, 1))
    score_buf = torch.empty(num_items * block, dtype=dtype, device=device)
    flag_buf = torch.empty(num_items * block, dtype=torch.bool, device=device)
    with torch.no_grad():
        for start in range(0, num_users, chunk_size):
            stop = min(start + chunk_size, num_users)
            width = stop - start
            scores = score_buf[: num_items * width].view(num_items, width)
            torch.mm(items, users[start:stop].to(device=device, dtype=dtype).T, out=scores)
            flags = flag_buf[: num_items * width].view(num_items, width)
            ranks[start:stop] = _block_ranks(
                scores, targets[start:stop], csr, start, ties, flags, 0, nan_targets[start:stop]
            )
    if nan_targets.any():
        _raise_nan(nan_targets, 0)
    return ranks.cpu()


def metrics_from_ranks(
    ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float | int]:
    """Recall@k (= HR@k with one target), MRR@k and NDCG@k for all ``ks`` from 0-based ranks."""
    ks = _check_ks(ks)
    ranks = ranks.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    n = ranks.numel()
    if n == 0:
        raise ValueError("ranking metrics: no users to evaluate (empty targets)")
    cutoffs = torch.tensor(ks, dtype=torch.float64).unsqueeze(1)  # (K, 1)
    hit = (ranks.unsqueeze(0) < cutoffs).to(torch.float64)  # (K, U)
    recall = hit.mean(1)
    mrr = (hit / (ranks + 1.0)).mean(1)
    ndcg = (hit / torch.log2(ranks + 2.0)).mean(1)
    out: dict[str, float | int] = {}
    for i, k in enumerate(ks):
        out[f"recall@{k}"] = float(recall[i])
        out[f"mrr@{k}"] = float(mrr[i])
        out[f"ndcg@{k}"] = float(ndcg[i])
    out["n_users"] = n
    return out


def classification_metrics(y_true, y_pred, num_classes: int) -> dict[str, float | int]:
    """Accuracy and macro-F1, with the majority-class rate of ``y_true`` as the floor to beat.

    Macro-F1 averages over the classes present in ``y_true`` or ``y_pred`` (as
    ``sklearn.metrics.f1_score(average="macro")`` does): a class absent from both has no
    defined F1 and would otherwise drag the mean towards 0 for reasons unrelated to the model.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes}")
    true = _as_labels(y_true, "y_true", num_classes)
    pred = _as_labels(y_pred, "y_pred", num_classes)
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true has {true.size} labels but y_pred has {pred.size}; expected equal"
        )
    if true.size == 0:
        raise ValueError("classification metrics: y_true is empty")
    confusion = np.bincount(true * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(1).astype(np.float64)  # true count per class
    predicted = confusion.sum(0).astype(np.float64)
    denom = support + predicted
    present = denom > 0
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=present)
    return {
        "accuracy": float(tp.sum() / true.size),
        "macro_f1": float(f1[present].mean()),
        "majority_rate": float(support.max() / true.size),
        "n": int(true.size),
    }


def _block_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    csr: tuple[torch.Tensor, torch.Tensor] | None,
    row_offset: int,
    ties: Ties,
    flags: torch.Tensor,
    item_dim: int,
    nan_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ranks of ``targets`` in one score block whose first user is ``row_offset``.

    ``scores`` is ``(B, N)`` when ``item_dim`` is 1 and ``(N, B)`` when it is 0; it may be
    overwritten (history masking), and ``flags`` is a bool scratch buffer of its shape.
    NaN target scores raise at once, or, when ``nan_targets`` (B,) is given, are marked there
    so that the caller checks once instead of synchronising with the device every block.
    """
    users = torch.arange(scores.shape[1 - item_dim], device=scores.device)
    index = (users, targets) if item_dim == 1 else (targets, users)
    target_scores = scores[index].unsqueeze(item_dim)  # broadcasts along the items
    if nan_targets is not None:
        nan_targets |= torch.isnan(target_scores.reshape(-1))
    elif torch.isnan(target_scores).any():
        _raise_nan(torch.isnan(target_scores.reshape(-1)), row_offset)
    excluded = None if csr is None else _mask_history_(scores, targets, csr, row_offset, item_dim)
    if ties == "pessimistic":
        # >= counts the target itself once; every tied other item ranks above it.
        torch.ge(scores, target_scores, out=flags)
        ranks = flags.sum(item_dim, dtype=torch.int32).long() - 1
    elif ties == "optimistic":
        torch.gt(scores, target_scores, out=flags)
        ranks = flags.sum(item_dim, dtype=torch.int32).long()
    else:
        raise ValueError(f"ties: expected 'pessimistic' or 'optimistic', got {ties!r}")
    return ranks if excluded is None else ranks.masked_fill_(excluded, NOT_RANKED)


def _raise_nan(is_nan: torch.Tensor, row_offset: int) -> None:
    bad = int(torch.nonzero(is_nan)[0, 0]) + row_offset
    raise ValueError(f"scores: target score of user row {bad} is NaN; cannot rank it")


def _mask_history_(
    scores: torch.Tensor,
    targets: torch.Tensor,
    csr: tuple[torch.Tensor, torch.Tensor],
    row_offset: int,
    item_dim: int,
) -> torch.Tensor:
    """Set excluded items to -inf in place, a listed target too; returns (B,) bool: whose
    target was excluded (a repeated consumption, a miss under this protocol)."""
    indptr, indices = csr
    num_users = scores.shape[1 - item_dim]
    bounds = indptr[row_offset : row_offset + num_users + 1]
    items = indices[bounds[0] : bounds[-1]]
    users = torch.repeat_interleave(
        torch.arange(num_users, device=scores.device), bounds[1:] - bounds[:-1]
    )
    scores[(users, items) if item_dim == 1 else (items, users)] = float("-inf")
    excluded = torch.zeros(num_users, dtype=torch.bool, device=scores.device)
    excluded[users[items == targets[users]]] = True
    return excluded


def _to_csr(
    exclude: Exclude, num_users: int, num_items: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise ``exclude`` to CSR ``(indptr, indices)`` int64 tensors on ``device``.

    A tuple is always read as CSR and a list as per-user index tensors, so that two users'
    histories can never be mistaken for an ``(indptr, indices)`` pair.
    """
    if isinstance(exclude, tuple):
        if len(exclude) != 2:
            raise ValueError(
                f"exclude: a tuple must be CSR (indptr, indices), got {len(exclude)} members; "
                "pass per-user histories as a list"
            )
        indptr = torch.as_tensor(exclude[0], device=device)
        indices = torch.as_tensor(exclude[1], device=device)
        if indptr.dim() != 1 or indptr.numel() != num_users + 1 or indptr.is_floating_point():
            raise ValueError(
                f"exclude: CSR indptr must be a 1-D integer tensor of length {num_users + 1} "
                f"(users + 1), got dtype {indptr.dtype} and shape {tuple(indptr.shape)}"
            )
        indptr, indices = indptr.long(), indices.long().reshape(-1)
    else:
        if len(exclude) != num_users:
            raise ValueError(
                f"exclude: expected CSR (indptr of length {num_users + 1}, indices) or a list of "
                f"{num_users} per-user index tensors, got a sequence of length {len(exclude)}"
            )
        parts = [torch.as_tensor(x, dtype=torch.long, device=device).reshape(-1) for x in exclude]
        lengths = torch.tensor([p.numel() for p in parts], dtype=torch.long, device=device)
        indptr = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        indices = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=device)
    if indptr[0] != 0 or bool((indptr[1:] < indptr[:-1]).any()) or indptr[-1] != indices.numel():
        raise ValueError(
            "exclude: indptr must start at 0, be non-decreasing and end at len(indices) "
            f"= {indices.numel()}, got start {int(indptr[0])} and end {int(indptr[-1])}"
        )
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_items):
        raise ValueError(
            f"exclude: item indices must lie in 0..{num_items - 1}, got range "
            f"{int(indices.min())}..{int(indices.max())}"
        )
    return indptr, indices


def _check_targets(
    targets: torch.Tensor, num_users: int, num_items: int, device: torch.device
) -> torch.Tensor:
    targets = torch.as_tensor(targets, device=device)
    if targets.is_floating_point() or targets.dim() != 1 or targets.numel() != num_users:
        raise ValueError(
            f"targets: expected a 1-D integer tensor of {num_users} item indices, got dtype "
            f"{targets.dtype} and shape {tuple(targets.shape)}"
        )
    targets = targets.long()
    if num_users and (int(targets.min()) < 0 or int(targets.max()) >= num_items):
        raise ValueError(
            f"targets: item indices must lie in 0..{num_items - 1} (token - 1), got range "
            f"{int(targets.min())}..{int(targets.max())}"
        )
    return targets


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks: expected one or more positive cut-offs, got {ks}")
    return ks


def _as_labels(values, name: str, num_classes: int) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    labels = np.asarray(values).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class codes, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name}: class codes must lie in 0..{num_classes - 1}, got range "
            f"{labels.min()}..{labels.max()}"
        )
    return labels


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_KS",
    "NOT_RANKED",
    "classification_metrics",
    "metrics_from_ranks",
    "ranking_metrics",
    "ranking_metrics_from_scores",
    "target_ranks",
]
