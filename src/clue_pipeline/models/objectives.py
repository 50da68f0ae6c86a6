"""Sequence-level pre-training objectives over two views of a behaviour sequence: one registry.

Every objective shares the siamese shape of :class:`SimSiam` (encoder, projector, predictor)
and differs only in the loss on the two views' projections:

- ``simsiam`` (the paper): predictor + stop-gradient, symmetric negative cosine, no negatives.
- ``infonce``: the same views with the other users of the batch as negatives (a temperature);
  no predictor, gradients through both branches.
- ``vicreg``: no negatives; invariance (MSE of the two projections) plus a variance hinge and
  a covariance penalty on each branch, which forbid the low-rank spaces non-contrastive
  objectives drift into (Bardes et al. 2022). The projector ends on a plain Linear, since a
  BatchNorm there would satisfy the variance term by construction.

``masked_item_weight`` > 0 adds lambda x masked-item cross-entropy (PeterRec / BERT4Rec style,
on the unaugmented sequence) to any of them, so item embeddings stay discriminative;
``next_item_weight`` > 0 adds lambda x causal next-item cross-entropy at every position (SASRec's
objective), which trains the item states that next-item scoring reads (``next_item_share`` < 1
supervises a random share of the pairs, a cheaper estimate of the same loss); ``bag_weight`` > 0
adds lambda x a bag-of-items term: each view's ``[UR]`` vector scores the catalogue and is
trained to rank the sequence's whole item set first, the content a bag of items carries and a
user vector for profiling needs. ``view_weight`` scales
the view objective itself: 0 leaves the item terms alone, the ablation that tells what the views
add to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from clue_pipeline.config.pretraining import ObjectiveConfig
from clue_pipeline.data.tokens import FIRST_ITEM
from clue_pipeline.models.bag_of_items import (
    bag_matrix,
    inverse_document_frequency,
    item_presence,
)
from clue_pipeline.models.clue import SimSiam, SimSiamOutput, simsiam_loss, z_std
from clue_pipeline.models.heads import info_nce_loss, item_table
from clue_pipeline.models.item_pretraining import MaskedItemPretrainer, NextItemPretrainer
from clue_pipeline.models.sequence_encoder import SequenceEncoder

LossFn = Callable[[SimSiamOutput, ObjectiveConfig], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Objective:
    """A loss on the two views, and the head shape it needs (None = as ``pretrain.simsiam``)."""

    loss: LossFn
    predictor: bool | None
    stop_gradient: bool | None
    output_bn: bool


class PretrainOutput(NamedTuple):
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class SequencePretrainer(SimSiam):
    """SimSiam's heads trained under one objective of :data:`OBJECTIVES` (plus masked items).

    ``forward`` returns the loss so that one call, seen by a DistributedDataParallel wrapper,
    covers both views and the masked-item term; the parameters keep SimSiam's names
    (``encoder``, ``projector``, ``predictor``), so ``fixed_lr_params: [predictor]`` applies.
    """

    def __init__(
        self,
        encoder: SequenceEncoder,
        objective: ObjectiveConfig,
        proj_dim: int = 64,
        pred_dim: int = 32,
        stop_gradient: bool = True,
        predictor: bool = True,
        output_bn_affine: bool = True,
        encode_by_length: bool = False,
        projector: bool = True,
    ) -> None:
        spec = OBJECTIVES[objective.name]
        super().__init__(
            encoder,
            proj_dim=proj_dim,
            pred_dim=pred_dim,
            stop_gradient=stop_gradient if spec.stop_gradient is None else spec.stop_gradient,
            predictor=predictor if spec.predictor is None else spec.predictor,
            output_bn=spec.output_bn,
            output_bn_affine=output_bn_affine,
            encode_by_length=encode_by_length,
            projector=projector,
        )
        self.objective = objective
        self.masked_item = (
            MaskedItemPretrainer(encoder, mask_ratio=objective.masked_item_ratio)
            if objective.masked_item_weight > 0
            else None
        )
        self.next_item = (
            NextItemPretrainer(encoder, share=objective.next_item_share)
            if objective.next_item_weight > 0
            else None
        )
        # (N,) weights of items 1..N in the bag term; empty = uniform. Set from the corpus by
        # :meth:`weigh_bag_items`, not saved: the rows it comes from are rebuilt on resume.
        self.register_buffer("bag_item_weights", torch.empty(0), persistent=False)

    def weigh_bag_items(self, tokens: torch.Tensor) -> None:
        """``bag_targets: tfidf``: each item's smoothed inverse document frequency over
        ``tokens``, the pre-training rows (the floor's IDF, read from a sparse bag)."""
        if self.objective.bag_targets != "tfidf":
            return
        items_end = FIRST_ITEM + item_table(self.encoder).shape[0]
        bags = bag_matrix(tokens.cpu().numpy(), items_end)
        idf = torch.as_tensor(inverse_document_frequency(bags)[FIRST_ITEM:])
        self.bag_item_weights = idf.to(self.bag_item_weights.device)

    def forward(  # type: ignore[override]
        self,
        view_a: torch.Tensor,
        view_b: torch.Tensor,
        tokens: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PretrainOutput:
        out = self.views_forward(view_a, view_b)
        view_loss, metrics = OBJECTIVES[self.objective.name].loss(out, self.objective)
        metrics = {**metrics, "z_std": z_std(out.z1)}
        loss = self.objective.view_weight * view_loss
        if self.masked_item is None and self.next_item is None and self.objective.bag_weight == 0:
            return PretrainOutput(loss, metrics)
        if tokens is None or generator is None:
            raise ValueError("the joint objective needs the unaugmented tokens and a generator")
        metrics["view_loss"] = view_loss.detach()
        if self.objective.bag_weight > 0:
            table = item_table(self.encoder)
            weights = self.bag_item_weights if self.bag_item_weights.numel() else None
            bag_loss = 0.5 * (
                bag_of_items_loss(out.user1, table, tokens, weights)
                + bag_of_items_loss(out.user2, table, tokens, weights)
            )
            metrics["bag_loss"] = bag_loss.detach()
            loss = loss + self.objective.bag_weight * bag_loss
        if self.masked_item is not None:
            item_loss = self.masked_item(tokens, generator)
            metrics["masked_item_loss"] = item_loss.detach()
            loss = loss + self.objective.masked_item_weight * item_loss
        if self.next_item is not None:
            next_loss = self.next_item(tokens, generator)
            metrics["next_item_loss"] = next_loss.detach()
            loss = loss + self.objective.next_item_weight * next_loss
        return PretrainOutput(loss, metrics)


def bag_of_items_loss(
    users: torch.Tensor,
    table: torch.Tensor,
    tokens: torch.Tensor,
    item_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over users of the mean cross-entropy of each item in the user's sequence under a
    softmax of ``users @ table.T`` over the catalogue (items 1..N = table rows 0..N-1).

    ``tokens`` (B, W) are the unaugmented rows: padding, [MASK] and [UR] are not items. An
    item read twice counts once, as in the bag. ``item_weights`` (N,), if given, make the mean
    a weighted one (e.g. by IDF).
    """
    log_probs = F.log_softmax(users @ table.T, dim=1)  # (B, N)
    items_end = FIRST_ITEM + table.shape[0]
    bag = item_presence(tokens, items_end)[:, FIRST_ITEM:].to(log_probs.dtype)
    if item_weights is not None:
        bag = bag * item_weights.to(log_probs.dtype)
    sizes = bag.sum(dim=1).clamp(min=1e-12)
    return (-(bag * log_probs).sum(dim=1) / sizes).mean()


def simsiam_objective(out: SimSiamOutput, config: ObjectiveConfig):
    return simsiam_loss(out.p1, out.p2, out.z1, out.z2), {}


def infonce_objective(out: SimSiamOutput, config: ObjectiveConfig):
    return info_nce_loss(out.p1, out.p2, config.temperature), {}


def vicreg_terms(
    z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(invariance, variance, covariance) as in VICReg's reference implementation."""
    invariance = F.mse_loss(z1, z2)
    variance = torch.zeros((), device=z1.device)
    covariance = torch.zeros((), device=z1.device)
    for z in (z1, z2):
        centred = z - z.mean(dim=0)
        std = torch.sqrt(centred.var(dim=0) + eps)
        variance = variance + F.relu(1.0 - std).mean() / 2
        cov = centred.T @ centred / max(1, len(z) - 1)  # (D, D)
        off_diagonal = cov - torch.diag(torch.diagonal(cov))
        covariance = covariance + off_diagonal.pow(2).sum() / z.shape[1]
    return invariance, variance, covariance


def vicreg_objective(out: SimSiamOutput, config: ObjectiveConfig):
    invariance, variance, covariance = vicreg_terms(out.p1, out.p2)
    loss = (
        config.invariance_weight * invariance
        + config.variance_weight * variance
        + config.covariance_weight * covariance
    )
    return loss, {
        "invariance": invariance.detach(),
        "variance": variance.detach(),
        "covariance": covariance.detach(),
    }


OBJECTIVES: dict[str, Objective] = {
    "simsiam": Objective(simsiam_objective, predictor=None, stop_gradient=None, output_bn=True),
    "infonce": Objective(infonce_objective, predictor=False, stop_gradient=False, output_bn=True),
    "vicreg": Objective(vicreg_objective, predictor=False, stop_gradient=False, output_bn=False),
}
