"""tuner/records.py: the status rule, the ranking and the leaderboard that the search's results
and its MLflow tracking share, and TrialRow's JSON."""

from __future__ import annotations

import json

import pytest

from tuner.records import (
    END,
    STATUS,
    STEPS,
    TRIAL,
    TrialRow,
    best_column,
    leaderboard,
    rank,
    ranked,
    status_of,
)


@pytest.mark.parametrize(
    ("errored", "step", "status"),
    [(False, 900, "FINISHED"), (False, 1000, "FINISHED"), (False, 300, "KILLED"),
     (False, 0, "KILLED"), (True, 900, "FAILED"), (True, 0, "FAILED")],
)  # fmt: skip
def test_a_trial_is_finished_at_its_steps_stopped_before_and_failed_when_it_errored(
    errored: bool, step: int, status: str
) -> None:
    assert status_of(errored, step, 900) == status


def _row(trial: str, status: str, history: list[tuple[int, float]], mode: str = "min") -> TrialRow:
    step = history[-1][0] if history else 0
    fields = {"trial": trial, "status": status, "config": {"p": 0.5}, "raw": {"p": 0.5}}
    return TrialRow.from_history(history, step, mode, **fields)


def test_best_and_last_are_read_from_the_history() -> None:
    row = _row("a", "FINISHED", [(300, 12.0), (900, 13.5)])
    assert (row.best, row.last, row.step) == (12.0, 13.5, 900)
    assert _row("a", "FINISHED", [(300, 12.0), (900, 13.5)], mode="max").best == 13.5
    empty = _row("e", "KILLED", [])
    assert (empty.best, empty.last, empty.rankable) == (None, None, False)
    # a last step without the metric (a diverged evaluation): no last value
    gap = TrialRow.from_history(
        [(300, 1.0)], 600, "min", trial="g", status="KILLED", config={}, raw={}
    )
    assert gap.last is None and gap.best == 1.0


@pytest.mark.parametrize("mode", ["min", "max"])
def test_ranking_puts_the_best_first_and_never_a_failed_trial_before_a_scored_one(
    mode: str,
) -> None:
    rows = [
        _row("failed", "FAILED", [(300, 0.1)]),  # the best value, but it failed
        _row("empty", "KILLED", []),
        _row("low", "KILLED", [(300, 2.0)]),
        _row("high", "FINISHED", [(300, 3.0), (900, 2.5)]),
        _row("tie", "FINISHED", [(900, 2.0)]),
    ]
    order = [r.trial for r in rank(rows, mode)]
    scored = ["low", "tie", "high"] if mode == "min" else ["high", "low", "tie"]
    assert order == scored + ["empty", "failed"]  # the unranked by trial id
    assert [r.trial for r in ranked(rank(rows, mode))] == scored


def test_the_leaderboard_numbers_the_rows_in_either_format() -> None:
    rows = rank([_row("b", "KILLED", [(300, 17.37)]), _row("a", "FINISHED", [(900, 16.04)])], "min")
    rows[1].end = "stopped by ASHA at step 300"
    columns = [TRIAL, STATUS, ("p", lambda r: r.config["p"]), best_column("eval/fid"), STEPS]
    assert leaderboard(rows, columns).splitlines() == [
        "#  trial  status    p    best eval/fid  steps",
        "1  a      FINISHED  0.5  16.04          900",
        "2  b      KILLED    0.5  17.37          300",
    ]
    markdown = leaderboard(rows, [TRIAL, END, best_column("eval/fid")], fmt="markdown")
    assert markdown.splitlines()[3] == "| 2 | b | stopped by ASHA at step 300 | 17.37 |"


def test_a_row_reads_back_from_its_json() -> None:
    row = _row("a", "FINISHED", [(300, 12.0), (900, 13.5)])
    again = TrialRow.from_json(json.loads(json.dumps(row.to_json())))
    assert again == row and again.history == [(300, 12.0), (900, 13.5)]
