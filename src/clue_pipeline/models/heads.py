"""Fine-tuning heads on top of a sequence encoder: next-item ranking and classification.

Each head has ``loss(tokens, targets) -> scalar`` (what the shared training loop's step calls)
and a scoring method for evaluation. ``freeze_encoder`` turns either head into a linear probe:
the encoder stays in eval mode (no dropout) and receives no gradient.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.augment import sample_per_row
from clue_pipeline.config.finetuning import CLASSIFIER_READOUTS
from clue_pipeline.data.tokens import FIRST_ITEM, PAD
from clue_pipeline.models.sequence_encoder import SequenceEncoder


def item_logits(encoder: SequenceEncoder, states: torch.Tensor) -> torch.Tensor:
    """Scores of items 1..N for each state, by dot product with the tied item embedding.

    Column j is item token j + 1; pad, [MASK] and [UR] rows of the table are never scored.
    """
    return states @ item_table(encoder).T  # (..., N)


def item_table(encoder: SequenceEncoder) -> torch.Tensor:
    """The embedding rows of items 1..N, (N, d)."""
    return encoder.item_embedding.weight[FIRST_ITEM : encoder.config.tokens.items_end]


CPU_CHUNK_ROWS = 128  # ~6 MB of logits per chunk at N = 12k: stays in cache, no page faults
DEVICE_CHUNK_ROWS = 8192  # accelerators want large matmuls; memory is the only limit there


def item_cross_entropy(
    states: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int | None = None,
    label_smoothing: float = 0.0,
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Mean softmax cross-entropy of ``states @ table.T`` against ``targets`` (0-based rows).

    Equal to ``F.cross_entropy(states @ table.T, targets, label_smoothing=...)``, but the (M, N)
    logits never exist
    at once: each chunk of rows computes its loss and, right away, its gradients, so a step
    touches a cache-sized buffer instead of allocating (and page-faulting) M x N floats three
    times. On CPU this halves the cost of the full-softmax output layer.

    ``matmul_dtype=torch.bfloat16`` runs the three products (logits and both gradients) in
    bf16, as mixed-precision training does; the softmax, the loss and the gradient sums stay
    fp32. Logits are then rounded to 8 significant bits.
    """
    if states.shape[0] == 0:
        raise ValueError("item cross-entropy: no supervised positions in the batch")
    if chunk_size is None:
        chunk_size = CPU_CHUNK_ROWS if states.device.type == "cpu" else DEVICE_CHUNK_ROWS
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing = {label_smoothing!r}: expected a float in [0, 1)")
    if matmul_dtype not in MATMUL_DTYPES.values():
        raise ValueError(f"matmul_dtype = {matmul_dtype}: expected one of {list(MATMUL_DTYPES)}")
    return _ChunkedItemCrossEntropy.apply(
        states, table, targets, chunk_size, label_smoothing, matmul_dtype
    )


MATMUL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class _ChunkedItemCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states, table, targets, chunk_size, smoothing, matmul_dtype):
        with torch.autocast(states.device.type, enabled=False):  # fp32 softmax sums under bf16
            return _ChunkedItemCrossEntropy._forward(
                ctx, states, table, targets, chunk_size, smoothing, matmul_dtype
            )

    @staticmethod
    def _forward(ctx, states, table, targets, chunk_size, smoothing, matmul_dtype):
        """Smoothed target: (1 - e) one-hot + e / N; loss = lse - (1 - e) z_y - e mean(z)."""
        need_states, need_table = ctx.needs_input_grad[:2]
        s_all = states.detach().to(matmul_dtype)
        t = table.detach().to(matmul_dtype)
        grad_states = torch.empty(s_all.shape, device=states.device) if need_states else None
        grad_table = torch.zeros(t.shape, device=table.device) if need_table else None
        total = torch.zeros((), dtype=torch.float32, device=states.device)
        for start in range(0, s_all.shape[0], chunk_size):
            s = s_all[start : start + chunk_size]
            y = targets[start : start + chunk_size, None]
            logits = (s @ t.T).float()  # (c, N)
            target_logit = logits.gather(1, y)
            if smoothing:
                target_logit = (1.0 - smoothing) * target_logit + smoothing * logits.mean(
                    1, keepdim=True
                )
            top = logits.amax(1, keepdim=True)
            probs = logits.sub_(top).exp_()  # one exp pass serves the loss and the softmax
            sum_exp = probs.sum(1, keepdim=True)
            total += (top + sum_exp.log() - target_logit).sum()
            if need_states or need_table:
                probs.div_(sum_exp)
                if smoothing:
                    probs.sub_(smoothing / probs.shape[1])
                probs.scatter_add_(1, y, torch.full_like(y, smoothing - 1.0, dtype=probs.dtype))
                probs = probs.to(matmul_dtype)
                if need_states:
                    grad_states[start : start + chunk_size] = probs @ t
                if need_table and matmul_dtype == torch.float32:
                    grad_table.addmm_(probs.T, s)
                elif need_table:
                    grad_table += (probs.T @ s).float()
        ctx.save_for_backward(grad_states, grad_table)
        ctx.dtypes = (states.dtype, table.dtype)
        ctx.count = s_all.shape[0]
        return (total / ctx.count).to(states.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad_states, grad_table = ctx.saved_tensors
        scale = grad_output.float() / ctx.count
        return (
            None if grad_states is None else (grad_states * scale).to(ctx.dtypes[0]),
            None if grad_table is None else (grad_table * scale).to(ctx.dtypes[1]),
            None,
            None,
            None,
            None,
        )


class _EncoderHead(nn.Module):
    """Shared freezing logic: a frozen encoder stays in eval mode even under ``.train()``."""

    def __init__(self, encoder: SequenceEncoder, freeze_encoder: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> _EncoderHead:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def user_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """The encoder's output at [UR], (B, d)."""
        return self._encode(tokens, last=1).user

    def _encode(self, tokens: torch.Tensor, last: int | None = None):
        if self.freeze_encoder:
            with torch.no_grad():
                return self.encoder(tokens, last)
        return self.encoder(tokens, last)


READOUTS = ("ur", "last_item")
READ_COLUMNS = {"ur": 1, "last_item": 2}  # how far from the right each read-out's state sits


class NextItemModel(_EncoderHead):
    """Next-item recommendation: softmax over all items at every supervised position.

    ``targets`` is (B, W) like ``tokens``: the item token to predict at each position, 0 where
    nothing is supervised. Only supervised states are scored, which saves the padded share of
    the (positions x N) logits.

    ``readout`` picks the state that scores the next item: ``ur`` (the ``[UR]`` user vector,
    CLUE's design) or ``last_item`` (the state of the most recent item, as SASRec reads it;
    the ``[UR]`` target then moves to that position). Either way ``user_vectors`` stays the
    ``[UR]`` output, the vector CLUE transfers.

    With ``freeze_encoder`` the tied table is frozen with the encoder, so the probe trains its
    own output table (initialised from the item embedding): a linear layer on frozen states.
    """

    def __init__(
        self,
        encoder: SequenceEncoder,
        freeze_encoder: bool = False,
        readout: str = "ur",
        label_smoothing: float = 0.0,
        contrastive_weight: float = 0.0,
        contrastive_temperature: float = 1.0,
        softmax_matmul: str = "float32",
        position_share: float = 1.0,
    ) -> None:
        if readout not in READOUTS:
            raise ValueError(f"next-item readout = {readout!r}: expected one of {list(READOUTS)}")
        if softmax_matmul not in MATMUL_DTYPES:
            raise ValueError(
                f"next-item softmax_matmul = {softmax_matmul!r}: expected one of "
                f"{list(MATMUL_DTYPES)}"
            )
        super().__init__(encoder, freeze_encoder)
        self.readout, self.label_smoothing = readout, label_smoothing
        self.contrastive_weight = contrastive_weight
        self.contrastive_temperature = contrastive_temperature
        self.softmax_matmul = MATMUL_DTYPES[softmax_matmul]
        self.position_share = position_share
        self.output_items = (
            nn.Parameter(item_table(encoder).detach().clone()) if freeze_encoder else None
        )

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.loss(tokens, targets, generator)

    def loss(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy over the supervised positions; in training with
        ``position_share`` < 1, over that share of each row's positions, drawn with
        ``generator`` (the full softmax at every position dominates a step on large catalogues;
        a random subset estimates the same loss)."""
        if targets.shape != tokens.shape:
            raise ValueError(
                f"next-item targets: expected shape {tuple(tokens.shape)} like the tokens, "
                f"got {tuple(targets.shape)}"
            )
        if self.readout == "last_item":
            targets = last_item_targets(targets)
        supervised = targets > 0
        if self.training and self.position_share < 1.0:
            if generator is None:
                raise ValueError("next-item fine-tuning with position_share < 1 needs a generator")
            supervised = sample_per_row(supervised, self.position_share, generator)
        # states only from the first supervised column on (prefix rows: the last one or two)
        first = int(supervised.any(dim=0).to(torch.uint8).argmax())
        last = tokens.shape[1] - first
        if self.contrastive_weight:
            last = max(last, READ_COLUMNS[self.readout])
        targets, supervised = targets[:, -last:], supervised[:, -last:]
        all_states = self._encode(tokens, last).states  # (B, last, d)
        loss = item_cross_entropy(
            all_states[supervised],  # (M, d)
            self.item_matrix(),
            targets[supervised] - 1,
            label_smoothing=self.label_smoothing,
            matmul_dtype=self.softmax_matmul,
        )
        if self.contrastive_weight and self.training and len(tokens) > 1:
            loss = loss + self.contrastive_weight * self._dropout_contrast(tokens, all_states)
        return loss

    def _dropout_contrast(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """DuoRec's unsupervised term (and CLUE's dropout views): a second pass with its own
        dropout masks is the positive of each row's query vector, other rows the negatives."""
        column = -READ_COLUMNS[self.readout]
        again = self.query_vectors(tokens)
        return info_nce_loss(states[:, column], again, self.contrastive_temperature)

    def item_matrix(self) -> torch.Tensor:
        """(N, d): row j is item token j + 1; scores = query_vectors @ item_matrix.T."""
        return item_table(self.encoder) if self.output_items is None else self.output_items

    def query_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, d): the state that scores the next item, by ``readout``."""
        column = READ_COLUMNS[self.readout]
        return self._encode(tokens, last=column).states[:, -column]

    def user_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) scores of every item for each user; column j = token j + 1."""
        return self.query_vectors(tokens) @ self.item_matrix().T

    scores = user_scores


def last_item_targets(targets: torch.Tensor) -> torch.Tensor:
    """Targets for the ``last_item`` read-out: the ``[UR]`` column's target moves to the last
    item's column where that one has none (prefix rows); with every position supervised (user
    rows) both already hold the same item, so the ``[UR]`` target is simply dropped."""
    moved = targets.clone()
    moved[:, -2] = torch.where(moved[:, -2] > 0, moved[:, -2], moved[:, -1])
    moved[:, -1] = 0
    return moved


def mean_item_states(states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over each row's item columns (all but the last, ``[UR]``) of ``states`` (B, W, d),
    which are zero at padding."""
    items = (tokens[:, :-1] != PAD).sum(dim=1, keepdim=True).clamp(min=1)
    return states[:, :-1].sum(dim=1) / items.to(states.dtype)


def info_nce_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i's other view is the positive, the batch's other rows negatives."""
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    logits = a @ b.T / temperature  # (B, B)
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def balanced_class_weights(labels: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) users / (classes x the class's users), scikit-learn's ``balanced``; a
    class no training user has weighs 0 (nothing to weigh)."""
    counts = torch.bincount(
        torch.tensor(np.asarray(labels), dtype=torch.long), minlength=num_classes
    )
    present = int((counts > 0).sum())
    if present == 0:
        raise ValueError("balanced class weights: no training labels to count")
    weight = counts.sum() / (present * counts.clamp(min=1).double())
    return torch.where(counts > 0, weight, torch.zeros_like(weight)).float()


class ClassifierModel(_EncoderHead):
    """User vector -> linear softmax: user profiling, and cold-start (classes = target items).

    ``readout``: the user vector is the ``[UR]`` output (CLUE's design), or ``mean_items``, the
    mean of the item states: every item of the history speaks in it, as in a bag of items,
    which a single ``[UR]`` state trained on a few thousand labelled users does not learn;
    ``ur_and_mean_items``, the two concatenated (2d): the classifier reads both summaries.
    """

    def __init__(
        self,
        encoder: SequenceEncoder,
        num_classes: int,
        freeze_encoder: bool = False,
        readout: str = "ur",
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"ClassifierModel: num_classes = {num_classes}: expected at least 2")
        if readout not in CLASSIFIER_READOUTS:
            raise ValueError(
                f"ClassifierModel: readout = {readout!r}: expected one of "
                f"{list(CLASSIFIER_READOUTS)}"
            )
        super().__init__(encoder, freeze_encoder)
        self.num_classes = num_classes
        self.readout = readout
        width = encoder.config.hidden * (2 if readout == "ur_and_mean_items" else 1)
        self.classifier = nn.Linear(width, num_classes)
        # training's class weights (None: alike); not saved, the scores do not depend on them
        self.register_buffer("class_weight", None, persistent=False)

    def weigh_classes(self, weight: torch.Tensor | None) -> None:
        """The loss weighs each class by ``weight`` (num_classes,), or alike with None."""
        if weight is not None and tuple(weight.shape) != (self.num_classes,):
            raise ValueError(
                f"ClassifierModel: class weights of shape {tuple(weight.shape)}, expected "
                f"({self.num_classes},)"
            )
        device = self.classifier.weight.device
        self.class_weight = None if weight is None else weight.float().to(device)

    def user_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, d): ``[UR]``'s state, or the mean of the item states (padding excluded); (B, 2d)
        both, ``[UR]`` first."""
        if self.readout == "ur":
            return super().user_vectors(tokens)
        encoded = self._encode(tokens)
        items = mean_item_states(encoded.states, tokens)
        if self.readout == "mean_items":
            return items
        return torch.cat([encoded.user, items], dim=1)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(tokens, labels)

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (class-weighted by ``weigh_classes``); labels are class codes
        0..num_classes-1, (B,)."""
        return F.cross_entropy(self.logits(tokens), labels, weight=self.class_weight)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) unnormalised class scores."""
        return self.classifier(self.user_vectors(tokens))

    scores = logits
