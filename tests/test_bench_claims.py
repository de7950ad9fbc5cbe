"""bench/claims.py, the benchmarks' summariser: spreads, intervals, verdicts and the numbers as
the results page prints them, against values computed another way."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from claims import (  # noqa: E402
    better,
    ci,
    direction,
    every,
    exceeds,
    judge,
    mean_std,
    median_interval,
    pm,
    some,
    summarise_arms,
    target_holds,
)


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
        ([1.85, 1.9, 1.82, 1.95, 1.88], 1.8, True, True),
        ([1.6, 1.7, 1.75, 1.65, 1.72], 1.8, True, False),
        ([1.6, 1.75, 1.82, 1.9, 2.0, 1.7], 1.8, True, None),
        ([0.98, 1.01, 1.03, 0.99], 1.05, False, True),
        ([1.08, 1.1, 1.07, 1.12], 1.05, False, False),
        ([0.95, 1.03, 1.06, 1.09], 1.05, False, None),
    ],
)
def test_a_target_needs_the_whole_interval_on_one_side(
    values: list[float], target: float, at_least: bool, expected: bool | None
) -> None:
    assert target_holds(*median_interval(values), target, at_least) is expected


@pytest.mark.parametrize(("low", "high"), [(1.0, 2.0), (0.5, 1.5), (2.0, 2.0)])
def test_a_ceiling_is_the_mirror_of_a_floor(low: float, high: float) -> None:
    assert target_holds(low, high, 1.5, at_least=False) is target_holds(-high, -low, -1.5, True)


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


@pytest.mark.parametrize(
    ("mean", "std", "shown"),
    [(2.37, 0.28, "2.37 ± 0.28"), (0.0119, 0.001, "0.0119 ± 0.0010"), (5.4e-05, 8e-06, "5.4e-05 ± 8e-06"),
     (0.166, 0.0, "0.166 ± 0"), (20.3, 0.58, "20.3 ± 0.6"), (3800.0, 2551.5, "3800 ± 2552")],
)  # fmt: skip
def test_pm_rounds_the_mean_where_the_spread_is(mean: float, std: float, shown: str) -> None:
    assert pm(mean, std) == shown


def test_ci_keeps_the_ends_of_an_interval_off_zero_and_says_when_there_is_none() -> None:
    assert ci(1.33, 0.22, 2.43) == "1.3 [0.2, 2.4]"
    assert ci(0.0043, -0.0002, 0.0088) == "0.0043 [-0.0002, 0.0088]"
    assert ci(2.5, -math.inf, math.inf) == "2.5 [no interval from one value]"


def test_every_and_some_combine_verdicts() -> None:
    assert every([True, True]) is True and every([True, None]) is None
    assert every([None, False]) is False
    assert some([False, True]) is True and some([False, None]) is None
    assert some([False, False]) is False


def test_a_paired_claim_follows_its_data_seed_by_seed() -> None:
    """Shuffled seeds look alike unpaired; paired, the candidate is lower in every seed."""
    columns = {"base": [1.0, 5.0, 3.0], "cand": [0.9, 4.9, 2.9], "worse": [1.1, 5.1, 3.12]}
    v = better("cand beats base", columns, [("cand", "base")], "min")
    assert v["holds"] is True and "better in 3/3" in v["evidence"]
    assert better("worse beats base", columns, [("worse", "base")], "min")["holds"] is False
    both = better("both", columns, [("cand", "base"), ("worse", "base")], "min")
    assert both["holds"] is False and both["evidence"].startswith("base 3.0 ± 2.0, cand 2.9 ± 2.0")


def test_judge_states_claims_as_data_and_pairs_the_arms_runs_by_seed() -> None:
    runs = {
        "a": [{"fid": 3.0}, {"fid": 3.2}, {"fid": 3.1}],
        "b": [{"fid": 2.0}, {"fid": 2.3}, {"fid": 2.05}],
    }
    claims = [
        ("b lowers the FID", "fid", [("b", "a")], "min"),
        ("b raises the FID", "fid", [("b", "a")], "max"),
    ]
    lowers, raises = judge(runs, claims)
    assert (lowers["claim"], lowers["holds"], raises["holds"]) == ("b lowers the FID", True, False)
    assert lowers == better(
        "b lowers the FID", {"a": [3.0, 3.2, 3.1], "b": [2.0, 2.3, 2.05]}, [("b", "a")], "min"
    )


def test_exceeds_is_the_t_interval_against_a_reference() -> None:
    assert exceeds([1.0, 1.1, 0.9], 0.5)[0] is True
    assert exceeds([1.0, 1.1, 0.9], 1.5)[0] is False
    assert exceeds([1.0, 2.0, 0.0], 1.2)[0] is None


def test_summarise_arms_gives_mean_and_std_of_every_numeric_field() -> None:
    runs = {"a": [{"x": 1.0, "v": [1.0, 2.0], "name": "s", "t": 5}, {"x": 3.0, "v": [3.0, 2.0], "name": "s", "t": 7}]}  # fmt: skip
    s = summarise_arms(runs, skip=["t"])["a"]
    assert s["x"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2))}
    assert s["v"] == {"mean": [2.0, 2.0], "std": [pytest.approx(math.sqrt(2)), 0.0]}
    assert set(s) == {"x", "v"}
