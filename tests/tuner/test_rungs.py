"""tuner/search/rungs.py: each rung's rank correlation with the final metric, and its warning."""

from __future__ import annotations

import math

import pytest
from scipy.stats import spearmanr

from tuner.records import TrialRow
from tuner.search import rungs

STEPS = [300, 900]


def _row(status: str, history: list[tuple[int, float]]) -> TrialRow:
    fields = {"trial": "t", "status": status, "config": {}, "raw": {}}
    return TrialRow.from_history(history, history[-1][0], "min", **fields)


def _rows(early: list[float], final: list[float], status: str = "FINISHED") -> list[TrialRow]:
    return [_row(status, [(300, e), (900, f)]) for e, f in zip(early, final, strict=True)]


def test_a_reversed_rung_order_warns_and_names_the_option() -> None:
    final = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    early = list(reversed(final))  # the best at the end look worst at the rung
    result = rungs.check(_rows(early, final), STEPS)
    (rung,) = result["rungs"]
    assert rung["rho"] == pytest.approx(-1.0) and rung["keeps_order"] is False
    warning = rungs.against(result, "asha")
    assert warning is not None and "--scheduler fifo" in warning and "step 300" in warning
    text = rungs.describe(result, "eval/fid", "asha")
    assert text.splitlines()[-1] == warning and "8 trials" in text


def test_a_kept_rung_order_does_not_warn() -> None:
    final = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    early = [f * 2 + 1 for f in final]  # the same order, other values
    result = rungs.check(_rows(early, final), STEPS)
    (rung,) = result["rungs"]
    assert rung["rho"] == pytest.approx(1.0) and rung["keeps_order"] is True
    assert rungs.against(result, "asha") is None
    assert "warning" not in rungs.describe(result, "eval/fid", "asha")


def test_only_trials_that_reached_the_end_count_and_failed_ones_never() -> None:
    rows = _rows([4.0, 3.0, 2.0, 1.0, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0])
    rows.append(_row("KILLED", [(300, 9.0)]))  # stopped at the rung
    rows.append(_row("FAILED", [(300, 0.1), (900, 0.1)]))
    result = rungs.check(rows, STEPS)
    assert result["trials"] == 5 and result["rungs"][0]["n"] == 5


def test_too_few_trials_say_so_instead_of_a_verdict() -> None:
    result = rungs.check(_rows([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), STEPS)
    (rung,) = result["rungs"]
    assert rung["rho"] is None and rung["keeps_order"] is None
    assert rungs.against(result, "asha") is None
    assert "too few trials (3)" in rungs.describe(result, "eval/fid", "asha")


def test_interval_is_fisher_z_with_the_bonett_wright_error_and_covers_rho() -> None:
    rho, n = 0.6, 12
    low, high = rungs.rank_interval(rho, n)
    se = math.sqrt((1 + rho**2 / 2) / (n - 3))
    assert low == pytest.approx(math.tanh(math.atanh(rho) - 1.959964 * se), rel=1e-5)
    assert high == pytest.approx(math.tanh(math.atanh(rho) + 1.959964 * se), rel=1e-5)
    assert low < rho < high
    # the correlation itself is scipy's Spearman ρ
    early, final = [3, 1, 2, 5, 4, 6], [1, 2, 3, 4, 5, 6]
    result = rungs.rung_correlations(
        [{300: e, 900: f} for e, f in zip(early, final, strict=True)], STEPS
    )
    assert result["rungs"][0]["rho"] == pytest.approx(spearmanr(early, final).statistic)


def test_every_evaluation_before_the_last_is_a_rung_and_metrics_name_it() -> None:
    histories = [{100: i, 300: i, 900: i} for i in range(6)]
    result = rungs.rung_correlations(histories, [100, 300, 900])
    assert [r["step"] for r in result["rungs"]] == [100, 300]
    keys = set(rungs.metrics(result))
    assert keys == {f"rungs/step_{s}/{k}" for s in (100, 300) for k in ("rho", "low", "high")}
    # a search without early stopping gets a note on what a rung there would do, not a warning
    reversed_order = rungs.check(_rows([6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6]), STEPS)
    note = rungs.against(reversed_order, "fifo")
    assert note.startswith("note:") and "--scheduler asha" in note
