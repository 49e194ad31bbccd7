"""The exact tests of tflib.stats against SciPy's and against values computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from tflib.stats import binomial_test, mcnemar_exact, midranks, wilcoxon_exact, wilson_interval


@pytest.mark.parametrize("k, n", [(0, 30), (22, 30), (21, 30), (30, 30), (7, 15), (1, 1)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_wilson_interval_matches_scipy(k, n, confidence):
    expected = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
    assert wilson_interval(k, n, confidence) == pytest.approx((expected.low, expected.high))


def test_wilson_interval_by_hand():
    # 5 of 10 at z = 1.96: centre 0.5, half width 1.96 * sqrt(0.025 + 0.00960) / 1.38416
    low, high = wilson_interval(5, 10)
    half = 1.959964 * np.sqrt(0.25 / 10 + 1.959964**2 / 400) / (1 + 1.959964**2 / 10)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-6)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)


@pytest.mark.parametrize(
    "k, n, p", [(4, 7, 0.5), (0, 22, 0.5), (3, 10, 0.3), (9, 12, 0.4), (0, 0, 0.5)]
)
def test_binomial_test_matches_scipy(k, n, p):
    expected = stats.binomtest(k, n, p).pvalue if n else 1.0
    assert binomial_test(k, n, p) == pytest.approx(expected, rel=1e-9)


def test_binomial_test_by_hand():
    # 0 of 22 at p = 1/2: both tails, 2 / 2^22
    assert binomial_test(0, 22) == pytest.approx(2 / 2**22)
    assert binomial_test(1, 4) == pytest.approx((1 + 4 + 4 + 1) / 16)  # all but the middle


def test_mcnemar_counts_the_discordant_draws():
    first = [True, True, False, False, True, False, True]
    second = [True, False, True, False, False, False, True]
    result = mcnemar_exact(first, second)
    assert (result.first_only, result.second_only, result.both, result.neither) == (2, 1, 2, 2)
    assert result.draws == 7
    assert result.p == pytest.approx(stats.binomtest(2, 3).pvalue)


def test_mcnemar_without_discordant_draws_is_one():
    assert mcnemar_exact([True, False], [True, False]).p == 1.0


def test_mcnemar_rejects_unpaired_outcomes():
    with pytest.raises(ValueError, match="two outcomes per draw"):
        mcnemar_exact([True, False], [True])


def test_midranks_share_the_ranks_of_ties():
    np.testing.assert_array_equal(midranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1, 3.5, 2])


@pytest.mark.parametrize("n", [1, 5, 12, 18, 25])
def test_wilcoxon_matches_scipy_without_ties(n):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n) + 0.3
    result = wilcoxon_exact(x, y)
    expected = stats.wilcoxon(x, y, method="exact")
    positive_ranks = midranks(np.abs(x - y))[x - y > 0].sum()
    assert result.statistic == positive_ranks
    assert min(result.statistic, n * (n + 1) / 2 - result.statistic) == expected.statistic
    assert result.p == pytest.approx(expected.pvalue, rel=1e-9)


def test_wilcoxon_with_ties_and_zeros_by_enumeration():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y = np.array([0.0, 3.0, 1.0, 2.0, 5.0, 8.0, 4.0])  # differences 1 -1 2 2 0 -2 3
    result = wilcoxon_exact(x, y)
    differences = (x - y)[x != y]
    ranks = midranks(np.abs(differences))
    observed = ranks[differences > 0].sum()
    centre = ranks.sum() / 2
    sums = [np.dot(signs, ranks) for signs in itertools.product([0, 1], repeat=len(ranks))]
    expected = np.mean([abs(s - centre) >= abs(observed - centre) - 1e-9 for s in sums])
    assert (result.n, result.positive, result.statistic) == (6, 4, observed)
    assert result.p == pytest.approx(expected)


def test_wilcoxon_of_identical_numbers_is_one():
    assert wilcoxon_exact([1.0, 2.0], [1.0, 2.0]).p == 1.0
