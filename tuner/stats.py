"""Intervals over seeds and repeats, shared by the search's verdict and the benchmarks.

A claim that one configuration beats another carries its spread: every comparison here returns
an interval, and `resolved` says whether it excludes no difference.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

LEVEL = 0.95
BOOTSTRAP_DRAWS = 10_000


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile t_{(1+level)/2, df}."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its Student-t interval (seeds independent).

    With one value the interval is (-inf, inf): one seed says nothing about the spread.
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = statistics.fmean(values)
    if n == 1:
        return mean, -math.inf, math.inf
    half = t_quantile(n - 1, level) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_improvement(
    candidate: Sequence[float], baseline: Sequence[float], mode: str, level: float = LEVEL
) -> tuple[float, float, float]:
    """(mean, low, high) of the per-seed improvement of `candidate` over `baseline`.

    The two lists are paired by seed. Positive means better in the metric's units: baseline −
    candidate when the metric is minimised (mode "min"), candidate − baseline when maximised.
    """
    if len(candidate) != len(baseline):
        raise ValueError(f"paired values differ in length: {len(candidate)} and {len(baseline)}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be min or max, not {mode!r}")
    sign = 1.0 if mode == "max" else -1.0
    diffs = [sign * (c - b) for c, b in zip(candidate, baseline, strict=True)]
    return mean_interval(diffs, level)


def resolved(low: float, high: float) -> bool:
    """Whether an interval of a difference excludes 0."""
    return low > 0.0 or high < 0.0


def median_interval(
    values: Sequence[float], level: float = LEVEL, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of `values` (the repeats), seeded."""
    rng = random.Random(seed)
    values = list(values)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    tail = (1 - level) / 2
    return meds[int(tail * draws)], meds[min(draws - 1, int((1 - tail) * draws))]


def target_verdict(low: float, high: float, target: float, at_least: bool) -> str:
    """'yes' / 'no' when the interval [low, high] lies on one side of `target` (a floor if
    at_least, else a ceiling), else 'within noise'."""
    if at_least:
        return "yes" if low >= target else "no" if high < target else "within noise"
    return "yes" if high <= target else "no" if low > target else "within noise"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of `values`; the deviation of one value is 0."""
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def direction(low: float, high: float) -> bool | None:
    """True when the interval of a difference lies above 0, False below, None when it holds 0."""
    return True if low > 0.0 else False if high < 0.0 else None


def target_holds(low: float, high: float, target: float, at_least: bool) -> bool | None:
    """target_verdict as True ('yes'), False ('no') or None ('within noise': not resolved)."""
    return {"yes": True, "no": False, "within noise": None}[
        target_verdict(low, high, target, at_least)
    ]
