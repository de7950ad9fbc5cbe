"""Intervals over seeds: the search's confirmation stage (tuner/search/confirm.py) and the
benchmarks' verdicts (bench/claims.py) judge their claims with them.

A claim that one configuration beats another carries its spread: a mean comes with its
Student-t interval, and an improvement is paired by seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy.stats import t as student_t

LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile t_{(1+level)/2, df}."""
    return float(student_t.ppf(0.5 + level / 2, df))


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
