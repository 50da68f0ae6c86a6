"""Views of a behaviour sequence for contrastive pre-training, built on tensors per step.

All strategies work on a whole batch ``(B, W)`` at once (random keys + sort/gather, masks from
``arange`` comparisons), draw every random number from the given ``torch.Generator`` (so a seed
fixes the views) on the tokens' device, and never touch padding or the ``[UR]`` last column.
Real items are the non-zero tokens left of ``[UR]``; batches are left-padded.

One registry, ``VIEW_STRATEGIES``, maps a name to ``fn(tokens, ratio, generator, mask_token)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from clue_pipeline.data.tokens import PAD

COMPOSE_MODES = ("sequential", "random")

Strategy = Callable[[torch.Tensor, float, torch.Generator, int], torch.Tensor]


@dataclass
class ViewPolicy:
    """How each view of a sequence is made; ``validate_view_policy`` builds it from parameters."""

    strategies: list[str] = field(default_factory=lambda: ["crop", "mask"])
    mask_ratio: float = 0.2
    crop_ratio: float = 0.2
    permute_ratio: float = 0.2
    compose: str = "sequential"  # sequential: all in order; random: one per sequence per view

    def ratio(self, strategy: str) -> float:
        return getattr(self, f"{strategy}_ratio", 0.0)


def make_views(
    tokens: torch.Tensor, policy: ViewPolicy, generator: torch.Generator, mask_token: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent views of every sequence (Algorithm 1 draws fresh views each step)."""
    view_a = apply_views(tokens, policy, generator, mask_token)
    view_b = apply_views(tokens, policy, generator, mask_token)
    return view_a, view_b


def apply_views(
    tokens: torch.Tensor, policy: ViewPolicy, generator: torch.Generator, mask_token: int
) -> torch.Tensor:
    """One view: the policy's strategies in order, or one chosen at random per sequence."""
    if policy.compose == "sequential":
        for name in policy.strategies:
            tokens = VIEW_STRATEGIES[name](tokens, policy.ratio(name), generator, mask_token)
        return tokens
    candidates = torch.stack(
        [
            VIEW_STRATEGIES[name](tokens, policy.ratio(name), generator, mask_token)
            for name in policy.strategies
        ]
    )  # (S, B, W)
    choice = torch.randint(
        len(policy.strategies), (tokens.shape[0],), generator=generator, device=tokens.device
    )
    return candidates[choice, torch.arange(tokens.shape[0], device=tokens.device)]


def mask_view(
    tokens: torch.Tensor, ratio: float, generator: torch.Generator, mask_token: int
) -> torch.Tensor:
    """Replace ``round(ratio * n)`` randomly chosen real items of each sequence by [MASK]."""
    counts = torch.round(ratio * real_lengths(tokens)).long()
    return tokens.masked_fill(mask_positions(tokens, counts, generator), mask_token)


def crop_view(
    tokens: torch.Tensor, ratio: float, generator: torch.Generator, mask_token: int
) -> torch.Tensor:
    """Drop one random contiguous run of ``round(ratio * n)`` items (at least 1 item stays)."""
    lengths = real_lengths(tokens)
    counts = torch.minimum(torch.round(ratio * lengths).long(), (lengths - 1).clamp(min=0))
    drop, _ = _random_block(tokens, lengths, counts, generator)
    keep = tokens != PAD
    keep[:, :-1] &= ~drop
    order = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices  # kept ones to the right
    return tokens.gather(1, order).masked_fill(~keep.gather(1, order), PAD)


def permute_view(
    tokens: torch.Tensor, ratio: float, generator: torch.Generator, mask_token: int
) -> torch.Tensor:
    """Shuffle one random contiguous run of ``round(ratio * n)`` items in place."""
    lengths = real_lengths(tokens)
    counts = torch.round(ratio * lengths).long()
    block, starts = _random_block(tokens, lengths, counts, generator)  # (B, W-1), (B,)
    columns = torch.arange(block.shape[1], device=tokens.device, dtype=torch.float64)
    noise = torch.rand(block.shape, generator=generator, device=tokens.device, dtype=torch.float64)
    # Block keys lie in [start, start + 1): shuffled among themselves, ordered against the rest.
    keys = torch.where(block, starts[:, None].to(torch.float64) + noise, columns)
    order = keys.argsort(1)
    out = tokens.clone()
    out[:, :-1] = tokens[:, :-1].gather(1, order)
    return out


def dropout_view(
    tokens: torch.Tensor, ratio: float, generator: torch.Generator, mask_token: int
) -> torch.Tensor:
    """The sequence unchanged: the two views differ only by the model's own dropout masks."""
    return tokens.clone()


VIEW_STRATEGIES: dict[str, Strategy] = {
    "mask": mask_view,
    "crop": crop_view,
    "permute": permute_view,
    "dropout": dropout_view,
}


def validate_view_policy(params: Mapping[str, Any]) -> ViewPolicy:
    """Check view parameters (e.g. ``params:augment.views``) and build a ``ViewPolicy``.

    Raises ValueError naming the bad parameter and the expected form.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"view policy: expected a mapping, got {type(params).__name__}")
    known = {f.name for f in fields(ViewPolicy)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"view policy: unknown parameters {unknown}; known: {sorted(known)}")
    policy = ViewPolicy(**params)
    strategies = policy.strategies
    if isinstance(strategies, str):
        strategies = [strategies]
    if not isinstance(strategies, list | tuple) or not strategies:
        raise ValueError(
            f"view policy 'strategies' = {strategies!r}: expected a non-empty list of "
            f"{sorted(VIEW_STRATEGIES)}"
        )
    for i, name in enumerate(strategies):
        if name not in VIEW_STRATEGIES:
            raise ValueError(
                f"view policy 'strategies[{i}]' = {name!r}: unknown strategy; "
                f"known: {sorted(VIEW_STRATEGIES)}"
            )
    policy.strategies = list(strategies)
    for name in ("mask_ratio", "crop_ratio", "permute_ratio"):
        value = getattr(policy, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"view policy '{name}' = {value!r}: expected a number in [0, 1)")
        setattr(policy, name, float(value))
    if policy.compose not in COMPOSE_MODES:
        raise ValueError(
            f"view policy 'compose' = {policy.compose!r}: expected one of {list(COMPOSE_MODES)}"
        )
    return policy


def real_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Number of real (non-pad) tokens left of the [UR] column, (B,)."""
    return (tokens[:, :-1] != PAD).sum(1)


def mask_positions(
    tokens: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Boolean (B, W): ``counts[b]`` real positions of row b chosen uniformly, never [UR]."""
    real = tokens != PAD
    real[:, -1] = False
    return choose_per_row(real, counts, generator)


def choose_per_row(
    candidates: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Boolean like ``candidates`` (B, W): ``counts[b]`` of row b's True entries (all of them
    if it has fewer), chosen uniformly."""
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    keys = keys.masked_fill(~candidates, 2.0)  # non-candidates sort after every candidate
    ranks = keys.argsort(1).argsort(1)
    return candidates & (ranks < counts[:, None])


def _random_block(
    tokens: torch.Tensor, lengths: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A contiguous run of ``counts`` real items at a uniform random start: (B, W-1) mask, start."""
    width = tokens.shape[1] - 1
    first_real = width - lengths  # column of the first real item
    slots = (lengths - counts + 1).clamp(min=1)  # possible starts
    offset = torch.rand(lengths.shape, generator=generator, device=tokens.device)
    start = first_real + (offset * slots).long().clamp(max=slots - 1)
    columns = torch.arange(width, device=tokens.device)[None, :]
    block = (columns >= start[:, None]) & (columns < (start + counts)[:, None])
    return block, start


def sample_per_row(
    candidates: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """Boolean like ``candidates``: ``round(share * n)`` (at least one) of each row's n True
    entries, chosen uniformly; rows without a candidate stay empty."""
    counts = torch.round(share * candidates.sum(1)).long().clamp(min=1)
    return choose_per_row(candidates, counts, generator)
