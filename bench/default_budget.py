"""Does the default search's budget resolve its family? TIW strength 1 against 0 on digits_biased.

The default search's trials resolve the family only if its largest effect, TIW-DSM against
plain denoising of the biased digits (METHODS.md §3), stands above the seed noise. Both arms are
the trials' exact configuration on the space's baseline. Target (issue 15): the FID difference
at least 3 times the larger seed standard deviation.
"""

import statistics
import tempfile
import time

import harness
from claims import judge, pm, sd, summarise_arms, table, verdict
from harness import Args, Result

from search_spaces import SPACES
from tuner.config.spec import resolve
from tuner.search.cli import build_parser
from tuner.search.plan import make_plan
from tuner.training.trainer import run_trial

NAME = "default_budget"
TITLE = "The default search's budget: TIW-DSM against plain denoising"
PLAIN, TIW = "plain (a=0)", "TIW-DSM (a=1)"
ARMS = {PLAIN: {"tiw.strength": 0.0}, TIW: {"tiw.strength": 1.0}}
CLAIMS = [
    ("TIW-DSM lowers the FID against plain denoising", "eval/fid", [(TIW, PLAIN)], "min"),
    ("TIW-DSM raises the minority share of the samples", "eval/minority_fraction", [(TIW, PLAIN)], "max"),
]  # fmt: skip
KEYS = ("eval/fid", "eval/minority_fraction", "eval/kid")
RATIO = 3.0  # the target: difference >= RATIO x the larger seed std


def run_one(arm: str, seed: int, smoke: bool, cache: str) -> Result:
    """The default search's trial configuration with the arm's TIW strength, to the end."""
    plan = make_plan(build_parser().parse_args(["--smoke-test"] if smoke else []))
    config = resolve(plan.fixed | SPACES[plan.space]["baseline"] | ARMS[arm] | {"seed": seed})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        final = run_trial(config, out, disc_cache=cache)
    return {"seed": seed, "config": config, "final": {k: final[k] for k in KEYS if k in final},
            "step": final["step"], "wall_s": time.perf_counter() - t0}  # fmt: skip


def summarise(result: Result) -> Result:
    raw = result["raw"]
    runs = {arm: [r["final"] for r in rows] for arm, rows in raw["per_seed"].items()}
    s = summarise_arms(runs)
    for arm, rows in raw["per_seed"].items():
        s[arm]["wall_s"] = statistics.fmean(r["wall_s"] for r in rows)
    plain, tiw = s[PLAIN]["eval/fid"], s[TIW]["eval/fid"]
    gap, noise = plain["mean"] - tiw["mean"], max(plain["std"], tiw["std"])
    s |= {"fid_gap": gap, "fid_gap_over_std": gap / noise if noise > 0 else float("inf")}
    verdicts = [
        verdict(f"On the default search's budget, TIW-DSM's FID gain over plain denoising is at least {RATIO:g} times "
                f"the larger seed standard deviation ({len(runs[PLAIN])} seeds)", gap >= RATIO * noise,
                f"gap {gap:.3g} = {s['fid_gap_over_std']:.3g} × max std (plain {pm(plain['mean'], plain['std'])}, "
                f"TIW {pm(tiw['mean'], tiw['std'])})"),
        *judge(runs, CLAIMS),
    ]  # fmt: skip
    rows = [[arm, sd(s[arm]["eval/fid"]), sd(s[arm]["eval/minority_fraction"])] for arm in ARMS]
    body = [f"`{result['command']}` trains the default search's trial configuration (its baseline: constant ε-MSE, no CDL) "
            f"with and without TIW-DSM on seeds {', '.join(map(str, raw['seeds']))}; final metrics at step "
            f"{raw['config']['train.steps']}:", table(["arm", "eval/fid", "eval/minority_fraction"], rows)]  # fmt: skip
    return harness.page(result, TITLE, body, verdicts, summary=s)


def measure(args: Args) -> None:
    with tempfile.TemporaryDirectory() as cache:
        runs = harness.arm_seed_loop(ARMS, args.seeds, lambda arm, seed: run_one(arm, seed, args.smoke, cache))  # fmt: skip
    raw = {"config": runs[PLAIN][0]["config"], "seeds": args.seeds, "per_seed": runs}
    harness.finish(args, harness.new(args, ARMS, raw), summarise)


if __name__ == "__main__":
    harness.main(NAME, __doc__, summarise, measure, {"seeds": [0, 1]}, seeds=[0, 1, 2, 3, 4])
