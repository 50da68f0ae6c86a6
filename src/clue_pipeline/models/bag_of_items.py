"""The linear floor (method ``linear``): a user is the bag of the items in their history.

Each user's items become a TF-IDF (or binary) vector over the catalogue, and scikit-learn's
logistic regression maps it to the labels, its inverse regularisation ``C`` chosen on the
validation users. No order, no encoder: whatever a learned user vector adds has to beat this.
Profiling classifies the bag; cold-start scores the target-domain classes from the source bag.
Settings: ``finetune.linear`` (:class:`clue_pipeline.config.LinearFloorConfig`).

The fitted weights sit in a torch module that speaks the fine-tuning heads' interface
(``logits``), so the evaluation code scores it like every other model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from scipy import sparse
from torch import nn

from clue_pipeline.config import LinearFloorConfig

logger = logging.getLogger(__name__)


class BagOfItemsModel(nn.Module):
    """``logits(tokens)`` = the weighted, L2-normalised bag of item tokens times the weights."""

    def __init__(
        self, idf: np.ndarray, weight: np.ndarray, bias: np.ndarray, items_end: int
    ) -> None:
        super().__init__()
        self.items_end = int(items_end)  # tokens 1 .. items_end - 1 are items
        self.idf = nn.Parameter(torch.as_tensor(idf, dtype=torch.float32), requires_grad=False)
        self.weight = nn.Parameter(
            torch.as_tensor(weight, dtype=torch.float32), requires_grad=False
        )  # (C, items_end)
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32), requires_grad=False)

    def bags(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, items_end) weighted bags; padding and special tokens count for nothing."""
        present = item_presence(tokens, self.items_end)
        bags = present * self.idf if self.idf.numel() else present
        return bags / bags.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.bags(tokens) @ self.weight.T + self.bias

    scores = logits


def item_presence(tokens: torch.Tensor, items_end: int) -> torch.Tensor:
    """(B, items_end) float32: 1 in column t where token t is an item of the row (tokens
    1 .. items_end - 1), read twice or not; padding and special tokens count for nothing."""
    is_item = (tokens > 0) & (tokens < items_end)
    counts = torch.zeros(tokens.shape[0], items_end, dtype=torch.float32, device=tokens.device)
    counts.scatter_add_(1, tokens.clamp(max=items_end - 1), is_item.float())
    return (counts > 0).float()


def bag_matrix(tokens: np.ndarray, items_end: int) -> sparse.csr_matrix:
    """(U, items_end) binary user x item matrix of the item tokens in each row."""
    tokens = np.asarray(tokens, dtype=np.int64)
    rows, cols = np.nonzero((tokens > 0) & (tokens < items_end))
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, tokens[rows, cols])),
        shape=(tokens.shape[0], items_end),
    )
    matrix.data[:] = 1.0  # an item read twice is still one item of the bag
    return matrix


def inverse_document_frequency(train_bags: sparse.csr_matrix) -> np.ndarray:
    """Smoothed IDF over the training users (scikit-learn's ``smooth_idf`` form)."""
    users = train_bags.shape[0]
    frequency = np.asarray((train_bags > 0).sum(axis=0)).ravel()
    return (np.log((1 + users) / (1 + frequency)) + 1.0).astype(np.float32)


def fit_bag_of_items(
    tokens: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    items_end: int,
    num_classes: int,
    settings: LinearFloorConfig,
    score: Callable[[nn.Module], dict],
    monitor: str,
    seed: int = 0,
) -> tuple[BagOfItemsModel, list[dict]]:
    """Fit one logistic regression per ``C`` and keep the one ``score`` ranks highest.

    ``score(model) -> dict`` evaluates a model on the validation users; its ``monitor`` entry
    (the task's validation metric, e.g. accuracy or mrr@10) decides. Returns the chosen model
    and one history row per ``C`` tried, in the order tried.
    """
    from sklearn.linear_model import LogisticRegression

    train = bag_matrix(tokens["train"], items_end)
    if train.shape[0] == 0:
        raise ValueError("linear floor: no training users")
    idf = (
        inverse_document_frequency(train)
        if settings.weighting == "tfidf"
        else np.empty(0, np.float32)
    )
    # Items no training user has keep weight 0 under the L2 penalty whatever C is, so the
    # solver sees only the others: the same fit, a third of the work on MovieLens cold-start.
    read = np.flatnonzero(train.getnnz(axis=0))
    features = _normalised(train, idf)[:, read]
    y = np.asarray(labels["train"], dtype=np.int64)
    history, best, best_value = [], None, -np.inf
    for c in settings.c_grid:
        model = LogisticRegression(C=c, max_iter=settings.max_iter, random_state=seed)
        model.fit(features, y)
        candidate = _to_module(model, idf, read, items_end, num_classes)
        metrics = score(candidate)
        if monitor not in metrics:
            raise ValueError(f"linear floor: monitor {monitor!r} not in {sorted(metrics)}")
        value = metrics[monitor]
        history.append({"epoch": len(history), "C": c, **metrics})
        logger.info("linear floor C=%s: %s", c, _short(metrics))
        if value > best_value:
            best, best_value = candidate, value
    return best, history


def _normalised(bags: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    weighted = bags.multiply(idf[None, :]).tocsr() if idf.size else bags.copy()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted


def _to_module(
    model, idf: np.ndarray, read: np.ndarray, items_end: int, num_classes: int
) -> BagOfItemsModel:
    """The fitted weights over the ``read`` columns, spread back over the whole catalogue."""
    read_weight, bias = class_weights(model, num_classes)
    weight = np.zeros((num_classes, items_end), dtype=np.float32)
    weight[:, read] = read_weight
    return BagOfItemsModel(idf, weight, bias, items_end)


def class_weights(fitted, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scikit-learn logistic regression's weights (C, features) and biases (C,) over
    every class: a class absent from training gets a -inf-like bias, and the binary case's one
    row (the positive class's) becomes two."""
    weight = np.zeros((num_classes, fitted.coef_.shape[1]), dtype=np.float32)
    bias = np.full(num_classes, -1e4, dtype=np.float32)
    classes = np.asarray(fitted.classes_, dtype=np.int64)
    if len(classes) == 2:
        weight[classes[1]], bias[classes[1]] = fitted.coef_[0], fitted.intercept_[0]
        weight[classes[0]], bias[classes[0]] = 0.0, 0.0
    else:
        weight[classes], bias[classes] = fitted.coef_, fitted.intercept_
    return weight, bias


def _short(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
