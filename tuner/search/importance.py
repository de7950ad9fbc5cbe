"""Which searched parameters mattered: Optuna's fANOVA over the trials of one rung.

Trials stopped by ASHA are scored at fewer steps than those that ran on, so the importances are
computed over the trials that reached the same evaluation step: the last step that at least
`MIN_TRIALS` trials reached (else the first one, which every trial reaches).
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from search_spaces import POINT_KEY, tune_domain
from tuner.records import FAILED, TrialRow
from tuner.search.plan import Plan

MIN_TRIALS = 5


def distributions(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Optuna's distributions of the searched parameters: Ray's OptunaSearch translation of
    their Tune domains (search_spaces.tune_domain, the one place a spec becomes a distribution),
    so the importances see the space the search drew from."""
    return OptunaSearch.convert_search_space({k: tune_domain(s) for k, s in params.items()})


def rung_values(rows: list[TrialRow], plan: Plan) -> tuple[int, list[tuple[dict, float]]]:
    """The step importances are computed at, and (searched values, metric) of its trials."""

    def at(step: int) -> list[tuple[dict, float]]:
        out = []
        for row in rows:
            value = dict(row.history).get(step)
            if row.status != FAILED and value is not None:
                params = {
                    k: row.raw.get(k) if k == POINT_KEY else row.config[k] for k in plan.params
                }
                out.append((params, value))
        return out

    for step in reversed(plan.eval_steps):
        found = at(step)
        if len(found) >= MIN_TRIALS:
            return step, found
    return plan.eval_steps[0], at(plan.eval_steps[0])


def param_importances(rows: list[TrialRow], plan: Plan) -> dict[str, Any] | None:
    """{"step", "trials", "evaluator", "importances": {key: share}} or None when fewer than 2
    trials or no parameter were searched."""
    if not plan.params:
        return None
    step, found = rung_values(rows, plan)
    if len(found) < 2:
        return None
    dists = distributions(plan.params)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize" if plan.mode == "min" else "maximize")
    for params, value in found:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    shares = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {
        "step": step,
        "trials": len(found),
        "evaluator": "fANOVA (optuna.importance, seed 0)",
        "importances": {k: float(v) for k, v in shares.items()},
    }


def describe(result: dict[str, Any] | None, metric: str) -> str:
    if result is None:
        return "parameter importance: not computed (fewer than 2 trials with the metric)"
    lines = [
        f"parameter importance ({result['evaluator']} of {metric} over the {result['trials']} "
        f"trials that reached step {result['step']}; shares sum to 1)"
    ]
    lines += [f"  {k:<22} {v:.3f}" for k, v in result["importances"].items()]
    return "\n".join(lines)
