"""Parameter importances (tuner/search/importance.py): Optuna's fANOVA over one rung's trials."""

from __future__ import annotations

import random
from typing import Any

from tuner.records import TrialRow
from tuner.search.cli import build_parser
from tuner.search.importance import describe, distributions, param_importances, rung_values
from tuner.search.plan import make_plan


def _plan() -> Any:
    return make_plan(build_parser().parse_args(["--space", "debias_family"]))


def _rows(plan: Any, n: int, reach: int) -> list[TrialRow]:
    """n trials of the space whose FID falls with tiw.strength alone; the first `reach` ran to
    the last step, the rest were stopped at the first rung with a worse FID."""
    rng = random.Random(0)
    first, last = plan.eval_steps[0], plan.eval_steps[-1]
    rows = []
    for i in range(n):
        config = {
            "weighting.p": rng.uniform(0, 1.5),
            "weighting.k": rng.uniform(0, 5),
            "weighting.clamp": rng.choice([0.0, 1.0, 5.0, 20.0]),
            "weighting.normalize": rng.choice([True, False]),
            "tiw.strength": rng.uniform(0, 1),
            "cdl.coef": rng.choice([0.0, 0.1, 1.0]),
        }
        fid = 3.5 - 1.5 * config["tiw.strength"] + rng.gauss(0, 0.02)
        history = [(first, fid + 2.0)] + ([(last, fid)] if i < reach else [])
        status = "FINISHED" if i < reach else "KILLED"
        fields = {"trial": str(i), "status": status, "config": config, "raw": config}
        rows.append(TrialRow.from_history(history, history[-1][0], "min", **fields))
    return rows


def test_the_distributions_are_the_spaces_tune_domains_in_optuna() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = distributions(_plan().params)
    assert dists["tiw.strength"] == FloatDistribution(0.0, 1.0)
    assert dists["cdl.coef"] == CategoricalDistribution((0.0, 0.1, 1.0))


def test_importances_are_computed_at_the_last_rung_enough_trials_reached() -> None:
    plan = _plan()
    step, found = rung_values(_rows(plan, 12, reach=6), plan)
    assert step == plan.eval_steps[-1] and len(found) == 6
    step, found = rung_values(_rows(plan, 12, reach=3), plan)  # too few: the first rung, all 12
    assert step == plan.eval_steps[0] and len(found) == 12


def test_the_parameter_that_drives_the_metric_gets_the_largest_share() -> None:
    plan = _plan()
    result = param_importances(_rows(plan, 16, reach=8), plan)
    shares = result["importances"]
    assert set(shares) == set(plan.params) and abs(sum(shares.values()) - 1) < 1e-6
    assert max(shares, key=shares.get) == "tiw.strength" and shares["tiw.strength"] > 0.5
    text = describe(result, plan.metric)
    assert f"over the 8 trials that reached step {plan.eval_steps[-1]}" in text
    assert describe(None, plan.metric).startswith("parameter importance: not computed")
