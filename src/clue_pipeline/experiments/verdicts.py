"""Verdicts computed from the cells, by one stated rule, never written by hand.

A claim "A beats B" holds when the mean difference exceeds ``k`` times the pooled std over
seeds, does not hold when it is inside that noise or the other way round, and is "not measured
yet" while cells are missing. With one seed on both sides (or a std of 0: constant
predictions) the noise is taken from the other multi-seed groups of the same dataset and task
(the caller passes it); without any, the verdict is the sign of the difference, marked as
having no noise estimate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_TESTABLE = "not testable here"
NOT_MEASURED = "not measured yet"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    detail: str

    def text(self) -> str:
        return f"{self.verdict} ({self.detail})" if self.detail else self.verdict


def pooled_std(groups: Sequence[Sequence[float]]) -> float | None:
    """sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) over groups with two or more values."""
    usable = [g for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in usable)
    if dof == 0:
        return None
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in usable) / dof)


def compare(
    better: Sequence[float],
    worse: Sequence[float],
    k: float,
    missing: int = 0,
    fallback_noise: float | None = None,
    higher_is_better: bool = True,
    kind: str = "beats",
) -> Verdict:
    """Verdict of "``better`` beats ``worse``" (kind "beats") or "is not worse than" ("matches").

    ``missing`` counts the cells still to run for this claim; ``fallback_noise`` is the pooled
    std to use where neither side has two seeds.
    """
    if missing:
        return Verdict(NOT_MEASURED, f"{missing} cells missing")
    if not better or not worse:
        return Verdict(NOT_TESTABLE, "no result for one side")
    sign = 1.0 if higher_is_better else -1.0
    diff = sign * (statistics.mean(better) - statistics.mean(worse))
    noise = pooled_std([better, worse])
    source = "pooled std over seeds"
    if not noise:  # one seed on both sides, or constant predictions (std 0)
        noise, source = fallback_noise, "pooled std of the task's multi-seed groups"
    if noise is None:
        holds = diff > 0 if kind == "beats" else diff >= 0
        word = HOLDS if holds else DOES_NOT_HOLD
        detail = f"{_signed(diff, higher_is_better)}, one seed: no noise estimate"
        return Verdict(word, detail)
    threshold = k * noise
    detail = f"{_signed(diff, higher_is_better)}, {k:g} x {source} = {threshold:.4f}"
    if kind == "beats":
        if diff > threshold:
            return Verdict(HOLDS, detail)
        word = "opposite beyond noise" if diff < -threshold else "inside noise"
        return Verdict(DOES_NOT_HOLD, f"{word}; {detail}")
    if diff >= -threshold:
        return Verdict(HOLDS, detail)
    return Verdict(DOES_NOT_HOLD, f"worse beyond noise; {detail}")


def _signed(diff: float, higher_is_better: bool) -> str:
    """The difference in A's favour, saying so where lower is better."""
    return f"difference {diff:+.4f}" + ("" if higher_is_better else " (lower is better)")


def spread(means: Sequence[float], k: float, noise: float | None, missing: int = 0) -> Verdict:
    """Verdict of "the metric is sensitive to the setting": max - min of the means > k x noise."""
    if missing:
        return Verdict(NOT_MEASURED, f"{missing} cells missing")
    if len(means) < 2:
        return Verdict(NOT_TESTABLE, "fewer than two settings measured")
    gap = max(means) - min(means)
    if noise is None:
        return Verdict(NOT_TESTABLE, f"range {gap:.4f}, no noise estimate (one seed everywhere)")
    detail = f"range {gap:.4f}, {k:g} x pooled std = {k * noise:.4f}"
    return Verdict(HOLDS if gap > k * noise else DOES_NOT_HOLD, detail)


def reaches_minimum_sooner(
    ablated_losses: Sequence[float], reference_losses: Sequence[float], loss_below: float
) -> Verdict:
    """Verdict of "without this component the loss quickly reaches its minimum (-1)": the
    ablated run gets to ``loss_below`` in fewer epochs than the full method (or it alone does)."""
    ablated = _first_epoch_below(ablated_losses, loss_below)
    reference = _first_epoch_below(reference_losses, loss_below)
    detail = (
        f"loss <= {loss_below:g} first at epoch {_epoch(ablated)} vs {_epoch(reference)} for "
        f"the full method; final {ablated_losses[-1]:.4f} vs {reference_losses[-1]:.4f}"
    )
    holds = ablated is not None and (reference is None or ablated < reference)
    return Verdict(HOLDS if holds else DOES_NOT_HOLD, detail)


def collapses(ablated_std: float, reference_std: float, std_ratio: float) -> Verdict:
    """Verdict of "without this component the users collapse": the spread of the normalised user
    vectors falls below ``std_ratio`` times the full method's."""
    ratio = ablated_std / reference_std if reference_std > 0 else math.inf
    detail = (
        f"user_std {ablated_std:.4f} vs {reference_std:.4f} = {ratio:.2f} x the full "
        f"method's (collapse: < {std_ratio:g})"
    )
    return Verdict(HOLDS if ratio < std_ratio else DOES_NOT_HOLD, detail)


def _first_epoch_below(losses: Sequence[float], bound: float) -> int | None:
    return next((epoch for epoch, loss in enumerate(losses) if loss <= bound), None)


def _epoch(epoch: int | None) -> str:
    return "never" if epoch is None else str(epoch)
