"""tuner/search/confirm.py: the confirmation's candidates and its verdict against the baseline
and the paper's recipe (the space's reference), paired by seed with 95 % t intervals."""

from __future__ import annotations

import json
import statistics

import pytest
from scipy.stats import t

from search_spaces import SPACES
from tuner.config.spec import resolve
from tuner.records import TrialRow, Verdict
from tuner.search import confirm
from tuner.search.cli import build_parser
from tuner.search.plan import make_plan

PLAN = make_plan(build_parser().parse_args(["--space", "debias_family"]))


def _row(trial: str, best: float, config: dict) -> TrialRow:
    return TrialRow(trial, "FINISHED", best, best, 900, [(900, best)], config, {})


ROWS = [
    _row("a", 1.9, resolve(PLAN.fixed | {"tiw.strength": 0.9})),
    _row("b", 2.2, resolve(PLAN.fixed | {"weighting.p": 1.0})),
]


def _interval(diffs: list[float]) -> list[float]:
    half = t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return [statistics.fmean(diffs) - half, statistics.fmean(diffs) + half]


def test_the_confirmation_trains_the_top_trials_the_baseline_and_the_reference() -> None:
    chosen = confirm.choose(PLAN, ROWS)
    assert list(chosen["candidates"]) == ["trial a", "trial b", "baseline", "reference"]
    ref = chosen["candidates"]["reference"]
    assert ref == resolve(PLAN.fixed | SPACES["debias_family"]["reference"]["config"])
    assert ref["weighting"] == "constant" and ref["tiw.strength"] == 1.0 and ref["cdl.coef"] == 0
    assert chosen["seeds"] == [1, 2, 3]  # the search trained on seed 0
    # a space without a reference confirms against its baseline only
    grid = make_plan(build_parser().parse_args(["--space", "baselines"]))
    rows = [_row("x", 1.0, resolve(grid.fixed))]
    assert "reference" not in confirm.choose(grid, rows)["candidates"]


def _values(**arms: list[float]) -> dict[tuple[str, int], float]:
    label = {"a": "trial a", "b": "trial b", "base": "baseline", "ref": "reference"}
    return {(label[k], s): v for k, vs in arms.items() for s, v in zip([1, 2, 3], vs, strict=True)}


def test_the_winner_is_paired_with_the_baseline_and_the_reference_seed_by_seed() -> None:
    chosen = confirm.choose(PLAN, ROWS)
    base, ref, a = [3.0, 3.3, 3.1], [2.0, 2.1, 2.05], [1.9, 2.15, 2.0]
    result = confirm.verdict(PLAN, chosen, _values(a=a, b=[2.5, 2.6, 2.4], base=base, ref=ref))
    winner = result.winner
    assert winner.trial == "a"
    to_base = [b - x for b, x in zip(base, a, strict=True)]
    assert winner.improvement == pytest.approx(statistics.fmean(to_base))
    assert winner.improvement_ci == pytest.approx(_interval(to_base))
    to_ref = [r - x for r, x in zip(ref, a, strict=True)]
    assert winner.vs_reference == pytest.approx(statistics.fmean(to_ref))
    assert winner.vs_reference_ci == pytest.approx(_interval(to_ref))
    assert result.resolved is True and result.beats_reference is None
    assert "beats the baseline" in result.conclusion
    assert "did not beat the paper's recipe (not resolved); use the paper's recipe" in (
        result.conclusion
    )
    assert result.reference.label == SPACES["debias_family"]["reference"]["label"]
    table = confirm.confirmation_table(PLAN, result)
    assert table.splitlines()[2].startswith("reference") and "vs reference [95 %]" in table
    assert "reference: TIW-DSM as published" in table
    assert "| reference |" in confirm.verdict_markdown(PLAN, result)
    metrics = confirm.verdict_metrics(result)
    assert metrics["verdict/vs_reference"] == pytest.approx(winner.vs_reference)
    assert metrics["verdict/reference_mean"] == pytest.approx(statistics.fmean(ref))


@pytest.mark.parametrize(
    ("ref", "beats", "words"),
    [
        ([2.5, 2.7, 2.6], True, "It also beats TIW-DSM as published"),
        ([1.5, 1.7, 1.6], False, "It is worse than TIW-DSM as published"),
    ],
)
def test_beating_or_losing_to_the_reference_is_said_plainly(
    ref: list[float], beats: bool, words: str
) -> None:
    chosen = confirm.choose(PLAN, ROWS)
    values = _values(a=[1.9, 2.15, 2.0], b=[2.5, 2.6, 2.4], base=[3.0, 3.3, 3.1], ref=ref)
    result = confirm.verdict(PLAN, chosen, values)
    assert result.beats_reference is beats and words in result.conclusion
    assert ("use the paper's recipe" in result.conclusion) == (not beats)


def test_verdict_json_holds_the_same_keys_and_reads_back() -> None:
    chosen = confirm.choose(PLAN, ROWS)
    values = _values(
        a=[1.9, 2.15, 2.0], b=[2.5, 2.6, 2.4], base=[3.0, 3.3, 3.1], ref=[2.0, 2.1, 2.0]
    )
    del values[("trial b", 2)]  # b failed on seed 2: no mean, no improvement
    result = confirm.verdict(PLAN, chosen, values)
    result.early_stopping = {"final_step": 900, "trials": 4, "rungs": []}
    data = json.loads(result.dumps())
    assert list(data) == [
        "metric", "mode", "seeds", "baseline", "candidates", "winner", "resolved", "reference",
        "beats_reference", "conclusion", "early_stopping",
    ]  # fmt: skip
    fields = ["trial", "config", "values", "mean", "ci", "improvement", "improvement_ci"]
    assert [list(c) for c in data["candidates"]] == [
        fields + ["vs_reference", "vs_reference_ci"]
    ] * 2
    assert data["winner"] == data["candidates"][0] and data["winner"]["trial"] == "a"
    b = data["candidates"][1]
    assert b["values"] == [2.5, None, 2.4] and b["mean"] is b["improvement"] is b["ci"] is None
    assert data["baseline"] == {
        "config": confirm.baseline_config(PLAN),
        "values": [3.0, 3.3, 3.1],
        "mean": pytest.approx(3.1333333),
        "ci": pytest.approx(_interval([3.0, 3.3, 3.1])),
    }
    assert list(data["reference"]) == ["config", "values", "mean", "ci", "label"]
    again = Verdict.from_json(data)
    assert again == result and again.winner is again.candidates[0]


def test_a_verdict_without_a_reference_writes_none_of_its_keys() -> None:
    grid = make_plan(build_parser().parse_args(["--space", "baselines"]))
    chosen = confirm.choose(grid, [_row("x", 1.0, resolve(grid.fixed | {"weighting": "x0"}))])
    values = {(label, s): 1.0 + s / 10 for label in chosen["candidates"] for s in chosen["seeds"]}
    result = confirm.verdict(grid, chosen, values)
    data = result.to_json()
    assert "reference" not in data and "beats_reference" not in data
    assert "early_stopping" not in data and "vs_reference" not in data["candidates"][0]
    assert data["winner"]["improvement"] == pytest.approx(0.0)
    assert Verdict.from_json(json.loads(result.dumps())) == result
