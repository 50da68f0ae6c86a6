"""CLUE's sequence-level objective: SimSiam over two views of a behaviour sequence.

Shape of SimSiam's builder: encoder f, projector g, predictor h; the loss is one line. The
ablations of the paper are switches: ``stop_gradient=False`` lets gradients flow through the
targets z, ``predictor=False`` uses p = z. ``output_bn_affine=False`` is the reference builder's
last projector BatchNorm (no learnt scale or shift); ``output_bn=False`` ends the projector on a
plain Linear, as objectives that regularise the projections' variance themselves need.
``encode_by_length=True`` encodes both views in one pass, in groups of similar length
(``user_vectors_by_length``): the same user vectors with less padding, and the heads' BatchNorm
still sees the whole mixed batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.models.sequence_encoder import SequenceEncoder, user_vectors_by_length


class SimSiamOutput(NamedTuple):
    p1: torch.Tensor
    p2: torch.Tensor
    z1: torch.Tensor
    z2: torch.Tensor
    user1: torch.Tensor  # encoder outputs at [UR], for the alignment/uniformity diagnostics
    user2: torch.Tensor


class SimSiam(nn.Module):
    """Siamese encoder + projector (3 x Linear-BN-ReLU, last without ReLU) + predictor.

    ``projector=False`` drops the projector: the loss then sees the user vectors themselves
    (DirectCLR, Jing et al. 2022: a projector lets the representation below it collapse).
    """

    def __init__(
        self,
        encoder: SequenceEncoder,
        proj_dim: int = 64,
        pred_dim: int = 32,
        stop_gradient: bool = True,
        predictor: bool = True,
        output_bn: bool = True,
        output_bn_affine: bool = True,
        encode_by_length: bool = False,
        projector: bool = True,
    ) -> None:
        super().__init__()
        if proj_dim < 1 or pred_dim < 1:
            raise ValueError(
                f"SimSiam: proj_dim = {proj_dim}, pred_dim = {pred_dim}: expected positive integers"
            )
        d = encoder.config.hidden
        self.encoder = encoder
        self.stop_gradient = stop_gradient
        self.encode_by_length = encode_by_length
        if not projector:  # the loss acts on the user vectors themselves (DirectCLR-style)
            proj_dim = d
        self.projector = (
            nn.Sequential(
                nn.Linear(d, proj_dim, bias=False),
                nn.BatchNorm1d(proj_dim),
                nn.ReLU(inplace=True),
                nn.Linear(proj_dim, proj_dim, bias=False),
                nn.BatchNorm1d(proj_dim),
                nn.ReLU(inplace=True),
                nn.Linear(proj_dim, proj_dim, bias=not output_bn),
                nn.BatchNorm1d(proj_dim, affine=output_bn_affine) if output_bn else nn.Identity(),
            )
            if projector
            else nn.Identity()
        )
        self.predictor = (
            nn.Sequential(
                nn.Linear(proj_dim, pred_dim, bias=False),
                nn.BatchNorm1d(pred_dim),
                nn.ReLU(inplace=True),
                nn.Linear(pred_dim, proj_dim),
            )
            if predictor
            else nn.Identity()
        )

    def forward(
        self, view_a: torch.Tensor, view_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        p1, p2, z1, z2, _, _ = self.views_forward(view_a, view_b)
        return p1, p2, z1, z2

    def views_forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> SimSiamOutput:
        """Forward plus the user vectors, so one pass feeds both the loss and the diagnostics."""
        if self.encode_by_length and view_a.shape == view_b.shape:
            both = user_vectors_by_length(self.encoder, torch.cat([view_a, view_b]))
            user1, user2 = both.chunk(2)  # (B, d) each
        else:
            user1, user2 = self.encoder(view_a, last=1).user, self.encoder(view_b, last=1).user
        z1, z2 = self.projector(user1), self.projector(user2)  # (B, proj_dim)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if self.stop_gradient:
            z1, z2 = z1.detach(), z2.detach()
        return SimSiamOutput(p1, p2, z1, z2, user1, user2)


def simsiam_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """Symmetric negative cosine similarity; -1 at perfect agreement."""
    return -0.5 * (F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean())


def z_std(z: torch.Tensor) -> torch.Tensor:
    """Std over the batch of l2-normalised z, averaged over dims: 0 = collapse, ~1/sqrt(dim) healthy."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def alignment(u1: torch.Tensor, u2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean distance^alpha between normalised positive pairs (Wang & Isola 2020); lower = closer."""
    a, b = F.normalize(u1.detach().float(), dim=1), F.normalize(u2.detach().float(), dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean()


def uniformity(u: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log E exp(-t |u_i - u_j|^2) over distinct pairs (Wang & Isola 2020); lower = more uniform."""
    x = F.normalize(u.detach().float(), dim=1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def spectrum(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(effective rank, share of variance on the top two principal components) of centred rows.

    Effective rank is exp of the entropy of the normalised singular values (Roy & Vetterli
    2007): d for a space spread evenly over d directions, 1 for a line. Low rank with a
    falling loss is dimensional collapse, which alignment and uniformity alone can miss.
    """
    x = u.detach().double()
    singular = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    variance = singular.pow(2) / singular.pow(2).sum().clamp_min(1e-300)
    p = singular / singular.sum().clamp_min(1e-300)
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()), variance[:2].sum()
