"""Paired tests, intervals and Holm's correction of the studies' comparisons."""

from __future__ import annotations

import pytest
from scipy import stats

from clue_pipeline.experiments.statistics import corrected, holm, paired, paired_outcomes, welch


def test_paired_finds_a_shift_that_welch_misses_when_seeds_vary_together():
    base = [0.40, 0.45, 0.50, 0.55, 0.60]
    shifted = [x + 0.01 + 0.001 * i for i, x in enumerate(base)]
    assert paired(shifted, base).verdict == "better"
    assert welch(shifted, base).verdict == "level"
    result = paired(shifted, base)
    assert result.low < result.diff < result.high
    assert result.low > 0
    assert result.p == pytest.approx(stats.ttest_rel(shifted, base).pvalue)


def test_zero_variance_is_not_testable_rather_than_p_zero():
    assert welch([0.5, 0.5, 0.5], [0.4, 0.4, 0.4]).p is None
    assert welch([0.5, 0.5, 0.5], [0.4, 0.4, 0.4]).verdict.startswith("not testable")
    assert paired([0.5, 0.6], [0.4, 0.5]).p is None  # the same difference twice
    assert paired([0.5], [0.4]).verdict == "not testable (1 pair(s))"


def test_paired_refuses_unequal_sides():
    with pytest.raises(ValueError, match="3 vs 2"):
        paired([1, 2, 3], [1, 2])


def test_mcnemar_counts_only_disagreements():
    a = [True] * 60 + [False] * 40
    b = [True] * 40 + [False] * 60
    result = paired_outcomes(a, b)
    assert result.diff == pytest.approx(0.2)
    assert result.p == pytest.approx(stats.binomtest(20, 20, 0.5).pvalue)
    assert result.verdict == "better"
    assert paired_outcomes(a, a).verdict == "level"


def test_holm_matches_the_step_down_definition():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_a_result_that_does_not_survive_correction_is_not_shown():
    comparisons = [paired([0.52, 0.525, 0.53], [0.5, 0.5, 0.5]) for _ in range(20)]
    assert comparisons[0].verdict == "better"
    rows = corrected(comparisons)
    assert all(row["verdict_holm"] == "not shown" for row in rows)
    assert rows[0]["p_holm"] == pytest.approx(min(1.0, 20 * comparisons[0].p))
