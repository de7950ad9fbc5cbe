"""tuner/stats.py against values computed another way (scipy, tabulated t quantiles)."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats as scipy_stats

from tuner.stats import (
    direction,
    mean_interval,
    mean_std,
    median_interval,
    paired_improvement,
    resolved,
    t_quantile,
    target_holds,
    target_verdict,
)


@pytest.mark.parametrize(("df", "tabulated"), [(1, 12.706), (2, 4.303), (4, 2.776), (30, 2.042)])
def test_t_quantile_is_the_tabulated_975th_percentile(df: int, tabulated: float) -> None:
    assert t_quantile(df) == pytest.approx(tabulated, abs=5e-4)


@pytest.mark.parametrize(
    "values", [[1.0, 2.0], [3.1, 2.9, 3.4], [0.2, -0.1, 0.05, 0.3, 0.0], [10.0] * 3 + [11.0]]
)
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_mean_interval_is_scipys_t_interval(values: list[float], level: float) -> None:
    mean, low, high = mean_interval(values, level)
    sem = statistics.stdev(values) / math.sqrt(len(values))
    ref_low, ref_high = scipy_stats.t.interval(
        level, len(values) - 1, loc=statistics.fmean(values), scale=sem
    )
    assert mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert (low, high) == (pytest.approx(ref_low, rel=1e-9), pytest.approx(ref_high, rel=1e-9))


def test_mean_interval_of_one_value_is_unbounded_and_of_none_is_an_error() -> None:
    assert mean_interval([2.5]) == (2.5, -math.inf, math.inf)
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])


def test_paired_improvement_is_positive_when_the_candidate_is_better() -> None:
    baseline = [3.0, 3.2, 2.9]
    lower = [2.0, 2.1, 2.05]  # a lower FID: better when minimising
    mean, low, high = paired_improvement(lower, baseline, "min")
    assert mean == pytest.approx(statistics.fmean([1.0, 1.1, 0.85]))
    assert low > 0 and resolved(low, high)
    mean_max, low_max, high_max = paired_improvement(lower, baseline, "max")
    assert (mean_max, low_max, high_max) == pytest.approx((-mean, -high, -low))
    assert direction(low_max, high_max) is False


def test_paired_improvement_pairs_by_seed_not_by_sorted_value() -> None:
    # the same values shuffled: unpaired they look alike, paired each seed gains exactly 0.1
    baseline = [1.0, 5.0, 3.0]
    candidate = [0.9, 4.9, 2.9]
    mean, low, high = paired_improvement(candidate, baseline, "min")
    assert mean == pytest.approx(0.1)
    assert high - low == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("candidate", "baseline", "mode", "match"),
    [([1.0], [1.0, 2.0], "min", "differ in length"), ([1.0], [2.0], "lower", "mode must be")],
)
def test_paired_improvement_rejects_bad_input(
    candidate: list[float], baseline: list[float], mode: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        paired_improvement(candidate, baseline, mode)


def test_median_interval_is_seeded_and_brackets_the_median() -> None:
    values = [1.7, 1.8, 1.9, 2.0, 1.6, 1.75, 1.95]
    first = median_interval(values)
    assert first == median_interval(values)  # the same draws every call
    low, high = first
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)
    assert median_interval([1.85] * 6) == (1.85, 1.85)
    narrow = median_interval(values, level=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


@pytest.mark.parametrize(
    ("values", "target", "at_least", "expected"),
    [
        ([1.85, 1.9, 1.82, 1.95, 1.88], 1.8, True, "yes"),
        ([1.6, 1.7, 1.75, 1.65, 1.72], 1.8, True, "no"),
        ([1.6, 1.75, 1.82, 1.9, 2.0, 1.7], 1.8, True, "within noise"),
        ([0.98, 1.01, 1.03, 0.99], 1.05, False, "yes"),
        ([1.08, 1.1, 1.07, 1.12], 1.05, False, "no"),
        ([0.95, 1.03, 1.06, 1.09], 1.05, False, "within noise"),
    ],
)
def test_target_verdict_needs_the_whole_interval_on_one_side(
    values: list[float], target: float, at_least: bool, expected: str
) -> None:
    low, high = median_interval(values)
    assert target_verdict(low, high, target, at_least) == expected
    assert (
        target_holds(low, high, target, at_least)
        == {
            "yes": True,
            "no": False,
            "within noise": None,
        }[expected]
    )


def test_mean_std_is_the_sample_standard_deviation() -> None:
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt(7 / 3)))
    assert mean_std([3.0]) == (3.0, 0.0)
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


@pytest.mark.parametrize(
    ("low", "high", "expected"), [(0.1, 0.5, True), (-0.5, -0.1, False), (-0.1, 0.1, None)]
)
def test_direction(low: float, high: float, expected: bool | None) -> None:
    assert direction(low, high) is expected
    assert resolved(low, high) is (expected is not None)
