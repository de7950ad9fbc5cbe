"""Does the default search's budget resolve its family? TIW strength 1 against 0 on digits_biased.

The default search (`python -m tuner.run`, space debias_family) trains every trial on the budget
of search_spaces/budgets.py's IMAGE_BUDGET and ranks it by a 500-sample FID. That budget resolves
the family only if its largest effect stands above the metric's seed noise: here the TIW-DSM
correction against plain denoising of the biased digits (METHODS.md §3), each trained on the
space's baseline otherwise (constant ε-MSE, no CDL) with exactly the trials' fixed configuration
(the plan of `python -m tuner.run --dry-run`), over several training seeds. The target (issue 15):
the FID difference between the two at least 3 times the seed standard deviation of either.

    .venv/bin/python bench/default_budget.py               # writes bench/results/default_budget.json
    .venv/bin/python bench/default_budget.py --smoke       # a minute, to a temporary folder
    .venv/bin/python bench/default_budget.py --resummarise
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import harness
from claims import better, mean_std, pm, sd, table, verdict
from harness import Result

from search_spaces import SPACES
from tuner.config.spec import resolve
from tuner.search.cli import build_parser
from tuner.search.plan import make_plan
from tuner.training.trainer import run_trial

NAME = "default_budget"
TITLE = "The default search's budget: TIW-DSM against plain denoising"
ARMS = {"plain (a=0)": 0.0, "TIW-DSM (a=1)": 1.0}
KEYS = ("eval/fid", "eval/minority_fraction", "eval/kid")
RATIO = 3.0  # the target: difference >= RATIO x the larger seed std


def trial_config(strength: float, seed: int, smoke: bool) -> dict[str, Any]:
    plan = make_plan(build_parser().parse_args(["--smoke-test"] if smoke else []))
    baseline = SPACES[plan.space]["baseline"]
    return resolve(plan.fixed | baseline | {"tiw.strength": strength, "seed": seed})


def run_one(strength: float, seed: int, smoke: bool, cache: str) -> Result:
    config = trial_config(strength, seed, smoke)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        final = run_trial(config, out, disc_cache=cache)
    return {
        "seed": seed,
        "config": config,
        "final": {k: final[k] for k in KEYS if k in final},
        "step": final["step"],
        "wall_s": time.perf_counter() - t0,
    }


def summarise(result: Result) -> Result:
    """Mean ± std per arm, the FID gap over the seed noise, and the verdicts."""
    raw = result["raw"]
    runs = raw["per_seed"]
    summary: dict[str, Any] = {}
    for arm, rows in runs.items():
        summary[arm] = {
            k: dict(zip(("mean", "std"), mean_std([r["final"][k] for r in rows]), strict=True))
            for k in KEYS
        }
        summary[arm]["wall_s"] = statistics.fmean(r["wall_s"] for r in rows)
    plain, tiw = (summary[a]["eval/fid"] for a in ARMS)
    gap, noise = plain["mean"] - tiw["mean"], max(plain["std"], tiw["std"])
    summary["fid_gap"] = gap
    summary["fid_gap_over_std"] = gap / noise if noise > 0 else float("inf")
    fid = {arm: [r["final"]["eval/fid"] for r in rows] for arm, rows in runs.items()}
    frac = {arm: [r["final"]["eval/minority_fraction"] for r in rows] for arm, rows in runs.items()}
    pair = [tuple(reversed(list(ARMS)))]
    verdicts = [
        verdict(
            f"On the default search's budget, TIW-DSM's FID gain over plain denoising is at least "
            f"{RATIO:g} times the larger seed standard deviation ({len(fid[pair[0][1]])} seeds)",
            gap >= RATIO * noise,
            f"gap {gap:.3g} = {summary['fid_gap_over_std']:.3g} × max std "
            f"(plain {pm(plain['mean'], plain['std'])}, TIW {pm(tiw['mean'], tiw['std'])})",
        ),
        better("TIW-DSM lowers the FID against plain denoising", fid, pair, "min"),
        better("TIW-DSM raises the minority share of the samples", frac, pair, "max"),
    ]
    rows = [[arm, *(sd(summary[arm][k]) for k in ("eval/fid", "eval/minority_fraction"))] for arm in ARMS]  # fmt: skip
    body = [f"`{result['command']}` trains the default search's trial configuration (its baseline: constant ε-MSE, no CDL) with and without TIW-DSM "
            f"on seeds {', '.join(map(str, raw['seeds']))}; final metrics at step {raw['config']['train.steps']}:",
            table(["arm", "eval/fid", "eval/minority_fraction"], rows)]  # fmt: skip
    return harness.page(result, TITLE, body, verdicts, summary=summary)


def main() -> int:
    args = harness.parser(NAME, __doc__, seeds=[0, 1, 2, 3, 4]).parse_args()
    if args.resummarise:
        harness.resummarise(args, summarise)
        return 0
    seeds = args.seeds[:2] if args.smoke else args.seeds
    with tempfile.TemporaryDirectory() as cache:
        runs = harness.arm_seed_loop(
            ARMS, seeds, lambda arm, seed: run_one(ARMS[arm], seed, args.smoke, cache)
        )
    raw = {"config": runs[next(iter(ARMS))][0]["config"], "seeds": seeds, "per_seed": runs}
    harness.finish(
        args, harness.new(args, {a: {"tiw.strength": v} for a, v in ARMS.items()}, raw), summarise
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
