"""Does the search's early stopping keep the winners? Each rung's ranking against the final one.

ASHA stops trials by their metric at a rung (an evaluation step before the last). That pays only
if the ranking at the rung predicts the ranking at the end. Over the trials that reached the last
evaluation, this computes the Spearman rank correlation between each earlier evaluation's metric
and the final one, with a 95 % interval (Fisher's z with the Bonett-Wright standard error
sqrt((1 + ρ²/2)/(n − 3)), Bonett & Wright 2000), and says when a rung ranks against the end: its
correlation is not above 0 at 95 %. A search without early stopping gets the same numbers, as
what a rung at that step would have done.
"""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import norm, spearmanr

from tuner.records import FAILED, TrialRow
from tuner.stats import LEVEL

MIN_TRIALS = 4  # the interval needs n > 3
EARLY_STOPPING = {"asha": "ASHA", "hyperband": "HyperBand"}  # schedulers that stop at rungs


def rank_interval(rho: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The interval of a Spearman correlation of n pairs (Fisher z, Bonett-Wright SE)."""
    if n < MIN_TRIALS:
        return -1.0, 1.0
    r = min(max(rho, -0.999999), 0.999999)
    half = norm.ppf(0.5 + level / 2) * math.sqrt((1 + r**2 / 2) / (n - 3))
    z = math.atanh(r)
    return math.tanh(z - half), math.tanh(z + half)


def rung_correlations(histories: list[dict[int, float]], steps: list[int]) -> dict[str, Any]:
    """{"final_step", "trials", "rungs": [{"step", "rho", "ci", "keeps_order"}]} over the
    histories (step -> metric) that reached the last of `steps`; keeps_order is True when the
    interval lies above 0, False when it does not (None: too few trials to say)."""
    final = steps[-1]
    reached = [h for h in histories if final in h]
    rungs = []
    for step in steps[:-1]:
        pairs = [(h[step], h[final]) for h in reached if step in h]
        n = len(pairs)
        if n < MIN_TRIALS:
            rungs.append({"step": step, "n": n, "rho": None, "ci": None, "keeps_order": None})
            continue
        early, late = zip(*pairs, strict=True)
        rho = float(spearmanr(early, late).statistic)
        if not math.isfinite(rho):  # a constant column: no ranking to keep
            rho = 0.0
        low, high = rank_interval(rho, n)
        rungs.append({"step": step, "n": n, "rho": rho, "ci": [low, high], "keeps_order": low > 0})
    return {"final_step": final, "trials": len(reached), "rungs": rungs}


def check(rows: list[TrialRow], eval_steps: list[int]) -> dict[str, Any]:
    """The correlations of a stage's rows (tuner/search/results.py summarize), failed ones out."""
    histories = [dict(r.history) for r in rows if r.status != FAILED]
    return rung_correlations(histories, eval_steps)


def describe(result: dict[str, Any], metric: str, scheduler: str) -> str:
    """Lines under the leaderboard: each rung's correlation, and one line when a rung ranks
    against the end, naming the option that changes it."""
    final, n = result["final_step"], result["trials"]
    head = (
        f"early stopping check (Spearman ρ of {metric} at each evaluation against step {final}, "
        f"over the {n} trials that reached it; 95 % intervals)"
    )
    if not result["rungs"]:
        return head + "\n  (one evaluation per trial: nothing to check)"
    lines = [head]
    for rung in result["rungs"]:
        if rung["rho"] is None:
            lines.append(f"  step {rung['step']:<6} too few trials ({rung['n']}) to judge")
            continue
        low, high = rung["ci"]
        lines.append(f"  step {rung['step']:<6} ρ = {rung['rho']:+.2f} [{low:+.2f}, {high:+.2f}]")
    warning = against(result, scheduler)
    return "\n".join(lines + ([warning] if warning else []))


def against(result: dict[str, Any], scheduler: str) -> str | None:
    """One line when some rung does not rank with the end (None otherwise)."""
    bad = [r for r in result["rungs"] if r["keeps_order"] is False]
    if not bad:
        return None
    steps = ", ".join(str(r["step"]) for r in bad)
    if scheduler in EARLY_STOPPING:
        return (
            f"warning: {EARLY_STOPPING[scheduler]}'s ranking at step {steps} is not shown to agree "
            "with the final one: it may stop the winners; rerun with --scheduler fifo (no early "
            "stopping)"
        )
    return (
        f"note: the ranking at step {steps} is not shown to agree with the final one: early "
        "stopping there (--scheduler asha) could stop the winners"
    )


def metrics(result: dict[str, Any]) -> dict[str, float]:
    """The parent run's early-stopping metrics: rungs/step_S/rho, .../low, .../high."""
    out: dict[str, float] = {}
    for rung in result["rungs"]:
        if rung["rho"] is not None:
            key = f"rungs/step_{rung['step']}"
            out |= {f"{key}/rho": rung["rho"], f"{key}/low": rung["ci"][0]}
            out[f"{key}/high"] = rung["ci"][1]
    return out
