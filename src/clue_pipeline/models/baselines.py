"""Non-sequential baselines over the bag of a user's history items: NFM and DeepFM.

Both treat the history as one multi-valued field (a multi-hot vector over item tokens
``1..N``, order ignored), which is what separates them from the sequence encoders: they
measure how much the order and the pre-training add. Each model gives a user vector and
logits over ``C`` classes (profiling labels, or target-domain items for cold-start), with the
same ``loss(tokens, labels)`` / ``logits(tokens)`` interface as the fine-tuning heads.

Multi-class generalisation of the click-through formulas (both papers score one binary
label): the first-order term ``sum_i w_i x_i`` gets one weight per (item, class) - a logistic
regression on the multi-hot vector - and the final prediction layer maps to ``C`` logits.

- **NFM** (He & Chua, SIGIR 2017): Bi-Interaction pooling
  ``f_BI = 0.5 * ((sum_i v_i)^2 - sum_i v_i^2)`` (all pairwise products in linear time),
  batch norm and dropout on it, then an MLP; the MLP's output is the user vector.
- **DeepFM** (Guo et al., IJCAI 2017): an FM component and a deep component sharing the
  item embeddings. The FM part's pairwise term is the same Bi-Interaction vector (its sum
  over dimensions is FM's scalar; here a linear layer maps it to the classes); the deep part
  is an MLP over the field embedding, which for a multi-valued field is the mean of its
  item embeddings. The user vector is ``[f_BI, deep output]``.

Tokens are the model input batch of the architecture contract, ``(B, max_len + 1)``: padding
``0``, ``[MASK]`` ``N+1`` and ``[UR]`` ``N+2`` are ignored, and an item repeated in the history
counts once (multi-hot, not counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.data.tokens import PAD, special_tokens


@dataclass
class BaselineConfig:
    """Shape of an NFM / DeepFM baseline."""

    num_items: int  # N: item tokens 1..N
    num_classes: int  # C: label classes, or target-domain items for cold-start
    hidden: int = 64  # item embedding size
    mlp_layers: tuple[int, ...] = (64,)  # hidden sizes of the MLP; the last is the user vector
    dropout: float = 0.2
    first_order: bool = True  # per-(item, class) linear term; N x C weights
    batch_norm: bool = True  # on the Bi-Interaction vector (NFM paper, Sec. 3.3)
    init_std: float = 0.02  # embeddings start small so logits start near uniform


class BagBaseline(nn.Module):
    """Shared parts: config checks, the item embedding, the multi-hot weights, the heads' API."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        _validate(config)
        self.config = config
        # Row 0 is a sink for ignored tokens (their bag weight is 0), never trained.
        rows = special_tokens(config.num_items).items_end  # padding and items
        self.item_embedding = nn.Embedding(rows, config.hidden, padding_idx=PAD)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
        self.linear = (
            nn.Embedding(rows, config.num_classes, padding_idx=PAD) if config.first_order else None
        )
        if self.linear is not None:
            nn.init.zeros_(self.linear.weight)
        self.bi_norm = nn.BatchNorm1d(config.hidden) if config.batch_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(tokens, labels)

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy; labels are class codes ``0..C-1``, (B,)."""
        return F.cross_entropy(self.logits(tokens), labels)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, C) unnormalised class scores."""
        ids, weights = self.bag(tokens)
        logits = self.output(self.user_vectors_from_bag(ids, weights))
        if self.linear is not None:
            logits = logits + F.embedding_bag(
                ids, self.linear.weight, per_sample_weights=weights, mode="sum"
            )
        return logits

    scores = logits

    def user_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, user_dim) representation fed to the output layer."""
        return self.user_vectors_from_bag(*self.bag(tokens))

    def user_vectors_from_bag(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # each model defines its own representation

    def bag(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ids (B, W) with ignored tokens mapped to 0, and multi-hot weights (B, W) in {0, 1}.

        Sorting each row puts repeats side by side, so a repeat is dropped by comparing
        neighbours instead of a per-user set.
        """
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"baseline tokens: expected a LongTensor (batch, max_len + 1), got dtype "
                f"{tokens.dtype} and shape {tuple(tokens.shape)}"
            )
        n = self.config.num_items
        is_item = (tokens >= 1) & (tokens <= n)
        ids, _ = torch.where(is_item, tokens, torch.zeros_like(tokens)).sort(dim=1)
        first = torch.ones_like(ids, dtype=torch.bool)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]
        weights = ((ids > 0) & first).to(self.item_embedding.weight.dtype)
        return ids, weights

    def bi_interaction(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """0.5 * ((sum v)^2 - sum v^2) over the bag: every pairwise product, in O(W d)."""
        table = self.item_embedding.weight
        total = F.embedding_bag(ids, table, per_sample_weights=weights, mode="sum")  # (B, d)
        squares = F.embedding_bag(ids, table * table, per_sample_weights=weights, mode="sum")
        return 0.5 * (total * total - squares)

    def mean_embedding(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Mean item embedding of the bag, zero for an empty history, (B, d)."""
        total = F.embedding_bag(
            ids, self.item_embedding.weight, per_sample_weights=weights, mode="sum"
        )
        return total / weights.sum(1, keepdim=True).clamp(min=1.0)


class NFM(BagBaseline):
    """Neural Factorization Machine: MLP over the Bi-Interaction vector."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        self.mlp = mlp(config.hidden, config.mlp_layers, config.dropout)
        self.user_dim = config.mlp_layers[-1] if config.mlp_layers else config.hidden
        self.output = nn.Linear(self.user_dim, config.num_classes)

    def user_vectors_from_bag(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        bi = self.dropout(self.bi_norm(self.bi_interaction(ids, weights)))  # (B, d)
        return self.mlp(bi)


class DeepFM(BagBaseline):
    """DeepFM: FM pairwise vector beside an MLP over the (mean) field embedding."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        self.mlp = mlp(config.hidden, config.mlp_layers, config.dropout)
        deep_dim = config.mlp_layers[-1] if config.mlp_layers else config.hidden
        self.user_dim = config.hidden + deep_dim
        self.output = nn.Linear(self.user_dim, config.num_classes)

    def user_vectors_from_bag(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        fm = self.dropout(self.bi_norm(self.bi_interaction(ids, weights)))  # (B, d)
        deep = self.mlp(self.dropout(self.mean_embedding(ids, weights)))  # (B, deep_dim)
        return torch.cat([fm, deep], dim=1)


BASELINES: dict[str, type[BagBaseline]] = {"nfm": NFM, "deepfm": DeepFM}


def build_baseline(name: str, config: BaselineConfig) -> BagBaseline:
    """The one constructor of baselines, by registry name."""
    if name not in BASELINES:
        raise ValueError(f"baseline '{name}': unknown; expected one of {sorted(BASELINES)}")
    return BASELINES[name](config)


def mlp(in_dim: int, layers: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per hidden size; empty ``layers`` is the identity."""
    modules: list[nn.Module] = []
    for width in layers:
        modules += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*modules)


def _validate(config: BaselineConfig) -> None:
    def fail(name: str, value: object, expected: str) -> None:
        raise ValueError(f"baseline parameter '{name}' = {value!r}: expected {expected}")

    if config.num_items < 1:
        fail("num_items", config.num_items, "a positive number of items")
    if config.num_classes < 2:
        fail("num_classes", config.num_classes, "at least 2 classes")
    if config.hidden < 1:
        fail("hidden", config.hidden, "a positive embedding size")
    if any(int(w) < 1 for w in config.mlp_layers):
        fail("mlp_layers", config.mlp_layers, "a list of positive layer widths")
    if not 0.0 <= config.dropout < 1.0:
        fail("dropout", config.dropout, "a probability in [0, 1)")
