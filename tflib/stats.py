r"""Small exact statistics for studies over random draws: a rate's confidence interval, and paired
tests of two settings run on the same draws.

A study runs each setting (an init scale, an optimizer) on the same draws, so two settings are
compared draw by draw. Whether a run completes is a yes/no outcome: the draws on which exactly
one setting completes (the *discordant* draws) carry the comparison, and under the hypothesis
that the settings do not differ each of them goes either way with probability 1/2 (McNemar's
exact test, a sign test on the discordant draws). A number per run (the final error of the draws
that completed under both) is compared by the signs and ranks of the differences (Wilcoxon's
signed-rank test, exact).

Explained in the CP dynamics chapter.

References
----------
E. B. Wilson, "Probable inference, the law of succession, and statistical inference", JASA, 1927.
Q. McNemar, "Note on the sampling error of the difference between correlated proportions or
percentages", Psychometrika, 1947.
F. Wilcoxon, "Individual comparisons by ranking methods", Biometrics Bulletin, 1945.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tflib.checks import check_number

#: Probabilities that differ by less than this relative amount count as equal (as SciPy's tests).
_TIES = 1 + 1e-7


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""Wilson's score interval for a rate observed as ``successes`` out of ``trials``.

    With :math:`\hat p = k/n` and :math:`z` the standard normal quantile at
    :math:`(1 + \text{confidence}) / 2`,

    .. math::
        \frac{\hat p + z^2/2n \pm z \sqrt{\hat p (1 - \hat p)/n + z^2/4n^2}}{1 + z^2/n} .

    Unlike :math:`\hat p \pm z\sqrt{\hat p(1-\hat p)/n}`, it stays inside [0, 1] and does not
    shrink to a point at 0 of n or n of n.

    Explained in the CP dynamics chapter.
    """
    check_number("trials", trials, low=1, integer=True)
    check_number("successes", successes, low=0, integer=True)
    check_number("confidence", confidence, low=0, strict=True)
    if successes > trials or confidence >= 1:
        raise ValueError(
            f"need successes <= trials and confidence < 1, got {successes} of {trials} at "
            f"{confidence}"
        )
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p, n = successes / trials, trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test: the probability, under Binomial(n, p), of an outcome no more
    likely than ``k`` (SciPy's ``binomtest(k, n, p).pvalue``). For ``p = 1/2`` it is twice the
    smaller tail, at most 1.

    Explained in the CP dynamics chapter.
    """
    check_number("n", n, low=0, integer=True)
    check_number("k", k, low=0, integer=True)
    check_number("p", p, low=0)
    if k > n or p > 1:
        raise ValueError(f"need k <= n and p <= 1, got k = {k}, n = {n}, p = {p}")
    probabilities = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    return min(1.0, sum(q for q in probabilities if q <= probabilities[k] * _TIES))


@dataclass(frozen=True)
class PairedCounts:
    """The outcome of McNemar's exact test on paired yes/no outcomes: ``first_only`` draws where
    only the first setting succeeded, ``second_only`` where only the second did, ``both`` and
    ``neither``, and the two-sided ``p`` value."""

    first_only: int
    second_only: int
    both: int
    neither: int
    p: float

    @property
    def draws(self) -> int:
        return self.first_only + self.second_only + self.both + self.neither


def mcnemar_exact(first: Sequence[bool], second: Sequence[bool]) -> PairedCounts:
    """McNemar's exact test of two settings with yes/no outcomes on the same draws.

    ``first[i]`` and ``second[i]`` are the outcomes of draw ``i`` under each setting. Only the
    discordant draws count: if the settings do not differ, each of them favours either one with
    probability 1/2, so the p value is :func:`binomial_test` of ``first_only`` among the
    discordant draws (an exact sign test). No discordant draw gives p = 1.

    Explained in the CP dynamics chapter.
    """
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"need two outcomes per draw: got shapes {first.shape} and {second.shape}")
    b, c = int(np.sum(first & ~second)), int(np.sum(~first & second))
    both, neither = int(np.sum(first & second)), int(np.sum(~first & ~second))
    return PairedCounts(b, c, both, neither, binomial_test(b, b + c) if b + c else 1.0)


def midranks(values: Sequence[float]) -> np.ndarray:
    """The ranks of ``values`` from 1, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


@dataclass(frozen=True)
class SignedRanks:
    """The outcome of :func:`wilcoxon_exact`: the number of nonzero differences ``n``, how many
    are positive (``first`` larger), the sum of the ranks of the positive ones (``statistic``)
    and the two-sided ``p`` value."""

    n: int
    positive: int
    statistic: float
    p: float


def wilcoxon_exact(first: Sequence[float], second: Sequence[float]) -> SignedRanks:
    r"""Wilcoxon's signed-rank test of paired numbers, exact.

    The differences ``first - second`` that are not zero are ranked by absolute value (ties
    share their mean rank). If the two settings do not differ, every difference is as likely
    positive as negative, independently, so the sum :math:`T^+` of the ranks of the positive
    ones is distributed as :math:`\sum_i s_i r_i` over the :math:`2^n` equally likely sign
    vectors :math:`s \in \{0, 1\}^n`; that distribution is counted exactly (a subset-sum count
    over the ranks, doubled to stay integers), and the p value is the probability of a
    :math:`T^+` at least as far from its mean :math:`\sum_i r_i / 2` as the one observed.
    Without ties it equals SciPy's ``wilcoxon(first, second, method="exact")``.

    Explained in the CP dynamics chapter.
    """
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"need two numbers per draw: got shapes {first.shape} and {second.shape}")
    differences = first - second
    differences = differences[differences != 0]
    n = len(differences)
    if n == 0:
        return SignedRanks(0, 0, 0.0, 1.0)
    doubled = np.rint(2 * midranks(np.abs(differences))).astype(int)  # midranks are halves
    statistic = int(doubled[differences > 0].sum())
    counts = np.zeros(int(doubled.sum()) + 1)  # counts[s]: sign vectors whose doubled T+ is s
    counts[0] = 1
    for r in doubled:
        counts[r:] = counts[r:] + counts[:-r]  # the right side is built before assigning
    probabilities = counts / counts.sum()
    centre = doubled.sum() / 2
    distance = abs(np.arange(len(counts)) - centre)
    p = probabilities[distance >= abs(statistic - centre) - 1e-9].sum()
    positive = int(np.sum(differences > 0))
    return SignedRanks(n, positive, statistic / 2, float(min(1.0, p)))
