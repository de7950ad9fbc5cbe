"""bench/search_strategies.py's surrogate and its trainable: the replayed searches report what the
surrogate says, at the plan's evaluation steps, within the compute budget."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import search_strategies as ss  # noqa: E402

KEYS = ["weighting.p", "weighting.k", "weighting.clamp", "weighting.normalize", "tiw.strength",
        "cdl.coef", "noise.loc", "noise.scale"]  # fmt: skip
STEPS = list(range(100, 901, 100))


def _truth(params: dict, step: int) -> float:
    """A smooth made-up learning curve: the final FID falls with tiw.strength and as noise.loc
    nears 2, every curve decays as 1/sqrt(step)."""
    final = 2.0 + (1 - params["tiw.strength"]) + 0.3 * (params["noise.loc"] - 2) ** 2
    return final + 12 * math.sqrt(100 / step) - 12 * math.sqrt(100 / 900)


def _table(n: int = 40, seeds: int = 3) -> dict:
    rng = np.random.default_rng(0)
    configs = []
    for _ in range(n):
        params = {"weighting.p": float(rng.uniform(0, 1.5)), "weighting.k": float(rng.uniform(0, 5)),
                  "weighting.clamp": float(rng.choice([0.0, 1.0, 5.0, 20.0])),
                  "weighting.normalize": bool(rng.integers(2)), "tiw.strength": float(rng.uniform()),
                  "cdl.coef": float(rng.choice([0.0, 0.1, 1.0])),
                  "noise.loc": float(rng.uniform(-2, 4)), "noise.scale": float(rng.uniform(1, 4))}  # fmt: skip
        runs = {}
        for s in range(seeds):
            offset = rng.normal(0, 0.1)
            curve = [{"step": t, "eval/fid": _truth(params, t) + offset + rng.normal(0, 0.05),
                      "eval/kid": 0.0, "eval/minority_fraction": 0.3} for t in STEPS]  # fmt: skip
            runs[str(s)] = {"trial": f"{len(configs)}-{s}", "wall_s": 1.0, "curve": curve}
        configs.append({"params": params, "short": runs})
    return {"params": KEYS, "seeds": list(range(seeds)), "eval_every": 100,
            "budgets": {"short": 900, "long": 2700}, "configs": configs}  # fmt: skip


@pytest.fixture(scope="module")
def surrogate() -> ss.Surrogate:
    return ss.Surrogate(ss.complete(_table()), KEYS)


def test_the_surrogate_learns_the_table_and_its_noise(surrogate: ss.Surrogate) -> None:
    configs = ss.complete(_table())
    assert len(configs) == 40 and configs[0]["fid"].shape == (3, 9)
    quality = ss.quality(configs, KEYS)
    assert quality["spearman"] > 0.8 and quality["mae"] < 0.5  # a smooth truth is learnt
    assert len(quality["predicted"]) == len(quality["measured"]) == 40
    # the noise bank is every measured seed's residual curve around its configuration's mean
    assert surrogate.residuals.shape == (120, 9)
    np.testing.assert_allclose(surrogate.residuals.reshape(40, 3, 9).sum(axis=1), 0, atol=1e-9)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ss.start_ray()
    yield
    ray.shutdown()


def test_a_replayed_fifo_search_reports_the_surrogate_at_the_plan_steps(
    surrogate: ss.Surrogate, ray_local: None, tmp_path: Path
) -> None:
    rows = ss.replay("random_fifo", 0, surrogate, 4 * ss.FINAL, str(tmp_path))
    assert len(rows) == 4 and {r.status for r in rows} == {"FINISHED"}
    for row in rows:
        steps = [s for s, _ in row.history]
        assert steps == [300, 600, 900]  # the FIFO plan's evaluations (eval.every 300)
        values = np.array([v for _, v in row.history])
        noise = values - surrogate.mean(row.config, steps)
        # one measured residual curve, whole: the noise of the three steps comes from one row
        matches = np.abs(surrogate.residuals[:, [2, 5, 8]] - noise).max(axis=1) < 1e-9
        assert matches.any()


def test_a_replayed_asha_search_stops_trials_and_keeps_to_its_budget(
    surrogate: ss.Surrogate, ray_local: None, tmp_path: Path
) -> None:
    budget = 8 * ss.FINAL
    rows = ss.replay("tpe_asha", 0, surrogate, budget, str(tmp_path))
    steps = sum(r.step for r in rows)
    assert budget <= steps <= budget + 2 * ss.FINAL  # stopped once the budget is spent
    assert any(r.status == "KILLED" and r.step == 300 for r in rows)
    finals = sorted(float(c["fid"][:, -1].mean()) for c in ss.complete(_table()))
    run = ss.judge(rows, surrogate, 0, finals[0], float(np.quantile(finals, 0.1)))
    assert run["regret"] == pytest.approx(run["truth"] - finals[0])
    assert run["truth"] == pytest.approx(float(surrogate.mean(run["chosen"], [900])[0]))
    assert run["trials"] == len(rows) and run["stopped"] >= 1


@pytest.mark.parametrize("kept", [True, False])
def test_the_long_ranking_says_whether_step_900_ranks_like_the_long_end(kept: bool) -> None:
    # seed 0's long runs: 12 configurations whose FID at 900 is i; at 2700 it keeps that order
    # or reverses it. Seed 1 has no long run (not in the result), seed 2 one unfinished.
    table = _table(n=12)
    for i, c in enumerate(table["configs"]):
        end = float(i if kept else 12 - i)
        curve = [
            {"step": t, "eval/fid": float(i) if t <= 900 else end} for t in range(100, 2701, 100)
        ]
        c["long"] = {"0": {"curve": curve}}
    table["configs"][0]["long"]["2"] = {"curve": [{"step": 100, "eval/fid": 5.0}]}
    long = ss.long_ranking(table)
    assert list(long) == ["0"]
    at_900 = long["0"]["rungs"][0]
    assert long["0"]["trials"] == 12 and at_900["step"] == 900
    assert at_900["rho"] == pytest.approx(1.0 if kept else -1.0)
    assert at_900["keeps_order"] is kept
