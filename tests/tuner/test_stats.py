"""tuner/stats.py against values computed another way (scipy, tabulated t quantiles)."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats as scipy_stats

from tuner.stats import mean_interval, paired_improvement, t_quantile


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
    assert low > 0
    mean_max, low_max, high_max = paired_improvement(lower, baseline, "max")
    assert (mean_max, low_max, high_max) == pytest.approx((-mean, -high, -low))
    assert high_max < 0


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
