"""Comparisons of two methods that a reader can trust: paired where the runs pair up, an effect
size with its 95 % interval, and Holm's correction across every comparison of a study.

Two methods run at one seed (or on one fold) share the user subset, the split and the seed,
so their difference per pair carries less noise than two independent samples: a paired test
sees effects an unpaired one misses. Every study makes many comparisons; a result that does not
survive Holm's correction within its study is reported as not shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """``a - b`` over paired runs (or per-user outcomes), with its test.

    ``p`` is None when nothing can be tested (too few pairs, or no variance at all: identical
    runs say nothing about noise, so they never count as a significant difference).
    """

    diff: float | None
    low: float | None  # 95 % interval of the mean difference
    high: float | None
    p: float | None
    n: int
    test: str
    verdict: str  # better | worse | level | not testable (...)

    def as_dict(self) -> dict:
        return asdict(self)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Paired t-test of ``a[i] - b[i]`` (the same seed, fold or user subset on both sides)."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs as many runs on each side: {len(a)} vs {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    if n < 2:
        return _untestable(diffs, n, "paired t", f"{n} pair(s)")
    mean = statistics.mean(diffs)
    spread = statistics.stdev(diffs)
    if spread == 0:
        return _untestable(diffs, n, "paired t", "no variance between pairs")
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * spread / math.sqrt(n)
    p = float(stats.ttest_rel(a, b).pvalue)
    return Comparison(mean, mean - half, mean + half, p, n, "paired t", _verdict(mean, p))


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Welch's t for runs that do not pair up (different seeds on each side)."""
    if len(a) < 2 or len(b) < 2:
        return _untestable([], min(len(a), len(b)), "Welch t", f"{len(a)} vs {len(b)} runs")
    mean = statistics.mean(a) - statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return _untestable([mean], min(len(a), len(b)), "Welch t", "no variance on either side")
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(va + vb)
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    n = min(len(a), len(b))
    return Comparison(mean, mean - half, mean + half, p, n, "Welch t", _verdict(mean, p))


def paired_outcomes(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> Comparison:
    """McNemar's exact test on per-user right/wrong outcomes of two classifiers.

    With k-fold every user is tested once, so two methods' predictions pair up user by user;
    only the users on which they disagree carry information about which is better.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"outcomes differ in length: {len(correct_a)} vs {len(correct_b)}")
    n = len(correct_a)
    if n == 0:
        return _untestable([], 0, "McNemar exact", "no users")
    only_a = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if y and not x)
    diff = (only_a - only_b) / n
    # Wald interval of a difference of paired proportions
    var = max((only_a + only_b) / n - diff**2, 0.0) / n
    half = 1.959963984540054 * math.sqrt(var)
    if only_a + only_b == 0:
        return Comparison(0.0, 0.0, 0.0, 1.0, n, "McNemar exact", "level")
    p = float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return Comparison(diff, diff - half, diff + half, p, n, "McNemar exact", _verdict(diff, p))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and is not counted)."""
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(ranked)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, index) in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def corrected(comparisons: Sequence[Comparison]) -> list[dict]:
    """Each comparison with its Holm-adjusted p and the verdict that survives correction."""
    adjusted = holm([c.p for c in comparisons])
    rows = []
    for comparison, p_holm in zip(comparisons, adjusted, strict=True):
        row = comparison.as_dict()
        row["p_holm"] = p_holm
        if p_holm is None:
            row["verdict_holm"] = comparison.verdict
        else:
            row["verdict_holm"] = _verdict(comparison.diff or 0.0, p_holm, shown=False)
        rows.append(row)
    return rows


def _verdict(diff: float, p: float, shown: bool = True) -> str:
    if p < ALPHA and diff != 0:
        return "better" if diff > 0 else "worse"
    return "level" if shown else "not shown"


def _untestable(diffs: Sequence[float], n: int, test: str, why: str) -> Comparison:
    mean = statistics.mean(diffs) if diffs else None
    return Comparison(mean, None, None, None, n, test, f"not testable ({why})")
