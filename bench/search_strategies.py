"""Search strategies replayed on the learning-curve table (issue 25 §2): which one pays.

The project's real search code — the plan (`tuner.search.plan.make_plan` from the CLI's options),
its searchers (Optuna's TPE through tuner/search/study.py, Ray's random search) and Ray's
schedulers (`tuner.search.tuning.make_scheduler`: ASHA, HyperBand, PBT, FIFO), on the
`debias_family_density` space — drives a Ray Tune trainable that trains nothing: it answers each
evaluation from a surrogate fitted to bench/results/learning_curves.json, so one search costs
seconds and each strategy is repeated --repeats times (search seed and noise seed = repeat).

Surrogate: extremely randomised trees (scikit-learn's ExtraTreesRegressor) of the log of the mean
FID over training seeds as a function of the searched values and the step (the log, because FIDs
span 1.7 to 17: a random forest on the raw FID ranked held-out configurations worse in a trial
of both); a trial's seed noise is a whole residual curve (a measured
configuration's per-seed FID minus its mean, at every step) drawn from the table, so the noise
keeps its correlation over steps. Its quality: 5-fold cross-validation over configurations
(Spearman ρ and mean absolute error of the predicted mean FID at the last step against the
measured one). Truth for a configuration = the surrogate's mean FID at the last step.

Each run has the same compute, `--budget` training steps (default 16 × 900, the default search's
trials run to the end): the search stops when its trials' reported steps add up to it. What a
run chooses is what the product outputs: its top 2 by best search-time FID retrained on 3 fresh
noise draws (the confirmation), the lower mean winning. Per strategy: regret (the chosen
configuration's true mean FID minus the table's best measured mean) with its 95 % t interval
over repeats, the fraction of runs whose early stopping stopped a configuration of the table's
top 10 % (true mean FID at most the table's 10th percentile), and from the table itself each
rung's rank correlation with the final FID (tuner/search/rungs.py).

    .venv/bin/python bench/search_strategies.py [--repeats 30] [--strategies ...]
    .venv/bin/python bench/search_strategies.py --smoke      # 2 repeats of 3 strategies, /tmp
    .venv/bin/python bench/search_strategies.py --resummarise
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
from claims import ci, direction, table, verdict
from harness import RESULTS, Result

from tuner.records import FINISHED, KILLED, TrialRow, ranked
from tuner.search import rungs
from tuner.stats import mean_interval, paired_improvement

NAME = "search_strategies"
TITLE = "Search strategies replayed on the learning-curve table"
TABLE = RESULTS / "learning_curves.json"
SPACE = "debias_family_density"
FINAL = 900
BUDGET = 16 * FINAL
MAX_CONCURRENT = 2  # the default search's concurrency on this 2-core machine
CONFIRM, CONFIRM_SEEDS = 2, 3
TOP_FRACTION = 0.10
DEFAULT = "tpe_fifo"  # tuner.run's default plan, chosen from this benchmark (README)
EARLY_STOPPING = ("tpe_asha", "tpe_asha_told_final", "tpe_asha_rung100", "tpe_asha_3brackets",
                  "tpe_hyperband", "random_asha")  # fmt: skip
ASHA_SAMPLES = 200  # enough trials for the budget to bind first
# strategy -> tuner.run options (over --space SPACE); each is a real plan of the project.
STRATEGIES: dict[str, list[str]] = {
    "tpe_asha": ["--search", "optuna", "--scheduler", "asha"],  # the default before this issue
    "tpe_asha_told_final": ["--search", "optuna", "--scheduler", "asha", "--stopped", "final"],
    "tpe_asha_rung100": ["--search", "optuna", "--scheduler", "asha", "--set", "eval.every=100"],
    "tpe_asha_3brackets": [
        "--search", "optuna", "--scheduler", "asha", "--brackets", "3", "--set", "eval.every=100",
    ],
    "tpe_hyperband": ["--search", "optuna", "--scheduler", "hyperband", "--set", "eval.every=100"],
    "tpe_fifo": ["--search", "optuna", "--scheduler", "fifo"],
    "random_fifo": ["--search", "random", "--scheduler", "fifo"],
    "random_asha": ["--search", "random", "--scheduler", "asha"],
    "pbt": ["--search", "random", "--scheduler", "pbt"],
    "grid": [],  # the published points below, run to the end in a random order (FIFO)
}  # fmt: skip
# The published points of the family in this space's terms (normalised weightings): constant,
# debiased SNR^-1/2, x0, P2 (k=1, γ=1), min-SNR-5 (x0 capped at SNR 5) × SD3's logit-normal
# (N(0, 2) over λ) and EDM's log-normal (N(2.4, 2.4)) × TIW off / TIW-DSM.
WEIGHTINGS = {"constant": (0.0, 0.0, 0.0), "debiased": (0.5, 0.0, 0.0), "x0": (1.0, 0.0, 0.0),
              "p2": (1.0, 1.0, 0.0), "min_snr_5": (1.0, 0.0, 5.0)}  # fmt: skip
DENSITIES = {"sd3": (0.0, 2.0), "edm": (2.4, 2.4)}
GRID = [
    {"weighting.p": p, "weighting.k": k, "weighting.clamp": c, "weighting.normalize": True,
     "tiw.strength": a, "cdl.coef": 0.0, "noise.loc": loc, "noise.scale": scale}
    for (p, k, c) in WEIGHTINGS.values() for (loc, scale) in DENSITIES.values() for a in (0.0, 1.0)
]  # fmt: skip


# -- the table and its surrogate ------------------------------------------------------------------
def complete(table: Result) -> list[dict]:
    """The configurations whose every seed reached step FINAL, each with its per-seed curves as
    arrays over the table's steps (100, 200, ..., FINAL)."""
    out = []
    steps = list(range(table["eval_every"], FINAL + 1, table["eval_every"]))
    for c in table["configs"]:
        runs = c.get("short", {})
        if len(runs) < len(table["seeds"]):
            continue
        curves = [by_step(r["curve"]) for r in runs.values()]
        if all(all(s in cv for s in steps) for cv in curves):
            fid = np.array([[cv[s] for s in steps] for cv in curves])  # (seeds, steps)
            out.append({"params": c["params"], "steps": steps, "fid": fid})
    return out


def by_step(curve: list[dict]) -> dict[int, float]:
    """A run's curve as the table records it ([{"step", "eval/fid"}, ...]) as step -> FID."""
    return {p["step"]: p["eval/fid"] for p in curve}


def features(params: dict[str, Any], keys: list[str]) -> list[float]:
    return [float(params[k]) for k in keys]


class Surrogate:
    """Mean FID(params, step) by extremely randomised trees on log FID, and seed noise from
    measured residual curves."""

    def __init__(self, configs: list[dict], keys: list[str], seed: int = 0) -> None:
        from sklearn.ensemble import ExtraTreesRegressor

        self.keys, self.steps = keys, configs[0]["steps"]
        x, y = [], []
        for c in configs:
            mean = c["fid"].mean(axis=0)
            for step, value in zip(self.steps, mean, strict=True):
                x.append(features(c["params"], keys) + [step])
                y.append(math.log(value))
        self.forest = ExtraTreesRegressor(
            n_estimators=300, min_samples_leaf=2, random_state=seed
        ).fit(np.array(x), np.array(y))
        self.residuals = np.concatenate([c["fid"] - c["fid"].mean(axis=0) for c in configs])

    def mean(self, params: dict[str, Any], steps: list[int]) -> np.ndarray:
        row = features(params, self.keys)
        return np.exp(self.forest.predict(np.array([row + [s] for s in steps])))

    def noise(self, index: int, steps: list[int]) -> np.ndarray:
        curve = self.residuals[index % len(self.residuals)]
        return np.array([curve[self.steps.index(s)] for s in steps])

    def draw(self, params: dict[str, Any], steps: list[int], rng: random.Random) -> np.ndarray:
        return self.mean(params, steps) + self.noise(rng.randrange(len(self.residuals)), steps)


def quality(configs: list[dict], keys: list[str], folds: int = 5) -> Result:
    """Held-out quality: each configuration predicted by a surrogate fitted without its fold."""
    from scipy.stats import spearmanr

    order = list(range(len(configs)))
    random.Random(0).shuffle(order)
    predicted = [0.0] * len(configs)
    for f in range(folds):
        held = set(order[f::folds])
        model = Surrogate([c for i, c in enumerate(configs) if i not in held], keys)
        for i in held:
            predicted[i] = float(model.mean(configs[i]["params"], [FINAL])[0])
    measured = [float(c["fid"][:, -1].mean()) for c in configs]
    errors = [abs(p - m) for p, m in zip(predicted, measured, strict=True)]
    seed_std = statistics.fmean(float(c["fid"][:, -1].std(ddof=1)) for c in configs)
    return {
        "configurations": len(configs),
        "folds": folds,
        "spearman": float(spearmanr(predicted, measured).statistic),
        "mae": statistics.fmean(errors),
        "rmse": math.sqrt(statistics.fmean(e**2 for e in errors)),
        "seed_std": seed_std,
        "predicted": predicted,
        "measured": measured,
    }


# -- one replayed search ---------------------------------------------------------------------------
def surrogate_trial(config: dict[str, Any], surrogate: Surrogate, steps: list[int], noise: int,
                    checkpoints: bool) -> None:  # fmt: skip
    """A Ray Tune trainable that trains nothing: the surrogate's curve with one residual curve,
    reported at the plan's evaluation steps (resumable, for PBT and HyperBand)."""
    from ray import tune

    state = {"next": 0, "noise": None}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = json.loads((Path(folder) / "state.json").read_text())
    if state["noise"] is None:
        trial = tune.get_context().get_trial_id()
        state["noise"] = random.Random(f"{noise}-{trial}").randrange(len(surrogate.residuals))
    params = {k: config[k] for k in surrogate.keys}  # (PBT may have changed them since)
    curve = surrogate.mean(params, steps) + surrogate.noise(state["noise"], steps)
    for i in range(state["next"], len(steps)):
        state["next"] = i + 1
        metrics = {"eval/fid": float(curve[i]), "step": steps[i]}
        if not checkpoints:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps(state))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


class Budget:
    """A Tune stopper that ends the search once its trials' reported steps add up to `steps`."""

    def __new__(cls, steps: int) -> Any:
        from ray.tune import Stopper

        class _Budget(Stopper):
            def __init__(self) -> None:
                self.done: dict[str, int] = {}

            def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
                self.done[trial_id] = int(result.get("step", 0))
                return False

            def stop_all(self) -> bool:
                return sum(self.done.values()) >= steps

        return _Budget()


def plan_of(strategy: str, seed: int, budget: int) -> Any:
    from tuner.search.cli import build_parser
    from tuner.search.plan import make_plan

    opts = STRATEGIES[strategy]
    stopping = opts[opts.index("--scheduler") + 1] in ("asha", "hyperband")
    samples = ASHA_SAMPLES if stopping else budget // FINAL
    args = ["--space", SPACE, *STRATEGIES[strategy], "--num-samples", str(samples)]
    return make_plan(build_parser().parse_args([*args, "--seed", str(seed), "--confirm", "0"]))


def replay(strategy: str, seed: int, surrogate: Surrogate, budget: int, storage: str) -> list:
    """One search: rows (tuner.search.results.summarize) of its trials."""
    from ray import tune

    from tuner.search.results import summarize
    from tuner.search.tuning import make_scheduler, make_search_alg, param_space

    plan = plan_of(strategy, seed, budget)
    trainable = tune.with_parameters(
        surrogate_trial, surrogate=surrogate, steps=plan.eval_steps, noise=seed,
        checkpoints=plan.scheduler in ("pbt", "hyperband"),
    )  # fmt: skip
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(plan),
        tune_config=tune.TuneConfig(
            metric=plan.metric,
            mode=plan.mode,
            search_alg=make_search_alg(plan, MAX_CONCURRENT),
            scheduler=make_scheduler(plan),
            num_samples=plan.num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{strategy}-{seed}", storage_path=storage, stop=Budget(budget), verbose=0
        ),
    )
    return summarize(tuner.fit(), plan)


def grid_rows(seed: int, surrogate: Surrogate, budget: int) -> list[TrialRow]:
    """The published points in a random order, each run to the end, as far as the budget goes."""
    rng = random.Random(seed)
    points = rng.sample(GRID, k=min(len(GRID), budget // FINAL))
    steps = [300, 600, FINAL]
    rows = []
    for i, params in enumerate(points):
        curve = surrogate.draw(params, steps, rng)
        history = list(zip(steps, map(float, curve), strict=True))
        fields = {"trial": str(i), "status": FINISHED, "config": params, "raw": params}
        rows.append(TrialRow.from_history(history, FINAL, "min", **fields))
    return sorted(rows, key=lambda r: r.best)


def judge(rows: list[TrialRow], surrogate: Surrogate, seed: int, best: float, top: float) -> Result:
    """What one run chose (its confirmed winner), its regret, and what its early stopping cut."""
    rng = random.Random(f"confirm-{seed}")
    params = [{k: r.config[k] for k in surrogate.keys} for r in ranked(rows)[:CONFIRM]]
    confirmed = [
        statistics.fmean(surrogate.draw(p, [FINAL], rng)[0] for _ in range(CONFIRM_SEEDS))
        for p in params
    ]
    chosen = params[int(np.argmin(confirmed))]
    truth = float(surrogate.mean(chosen, [FINAL])[0])
    stopped = [r for r in rows if r.status == KILLED]
    cut = [r for r in stopped if surrogate.mean(r.config, [FINAL])[0] <= top]
    return {
        "chosen": chosen,
        "truth": truth,
        "regret": truth - best,
        "search_pick_regret": float(surrogate.mean(params[0], [FINAL])[0]) - best,
        "trials": len(rows),
        "stopped": len(stopped),
        "stopped_top": len(cut),
        "steps": sum(r.step for r in rows),
    }


# -- the benchmark ---------------------------------------------------------------------------------
def table_rungs(configs: list[dict]) -> Result:
    """Each evaluation's rank correlation with the last, over the table's configurations: of the
    seed-mean FID, and within each training seed (what one search sees)."""
    steps = configs[0]["steps"]
    means = [dict(zip(steps, c["fid"].mean(axis=0), strict=True)) for c in configs]
    per_seed = [
        rungs.rung_correlations(
            [dict(zip(steps, c["fid"][s], strict=True)) for c in configs], steps
        )
        for s in range(configs[0]["fid"].shape[0])
    ]
    return {"mean": rungs.rung_correlations(means, steps), "per_seed": per_seed}


def long_ranking(table: Result) -> dict[str, Result]:
    """Within each training seed whose 3x-longer runs are in the table, and of the seeds' mean
    ("mean", configurations with every seed): the rank correlation of the FID at the search's
    last step (and at 2x) with the FID at the long budget's end, over those that reached it."""
    steps, seeds = [FINAL, 2 * FINAL, table["budgets"]["long"]], list(map(str, table["seeds"]))
    longs = [{s: by_step(run["curve"]) for s, run in c.get("long", {}).items()} for c in table["configs"]]  # fmt: skip
    curves = {s: [long[s] for long in longs if s in long] for s in seeds}
    full = [[long[s] for s in seeds] for long in longs if len(long) == len(seeds)]
    curves["mean"] = [{t: statistics.fmean(r[t] for r in rs) for t in steps if all(t in r for r in rs)} for rs in full]  # fmt: skip
    results = {key: rungs.rung_correlations(h, steps) for key, h in curves.items()}
    # is the best configuration at FINAL (seeds' mean) the best at the end?
    if done := [h for h in curves["mean"] if steps[-1] in h]:
        best = [min(range(len(done)), key=lambda i, t=t: done[i][t]) for t in (FINAL, steps[-1])]
        results["mean"]["best"] = {"same": best[0] == best[1], "end": steps[-1], "at_final": done[best[0]][FINAL],
                                   "its_end": done[best[0]][steps[-1]], "best_end": done[best[1]][steps[-1]]}  # fmt: skip
    return {key: result for key, result in results.items() if result["trials"]}


def start_ray() -> None:
    """A local Ray whose workers import this script's module (bench/ on their path)."""
    import os

    import ray

    path = os.pathsep.join([str(Path(__file__).parent), str(harness.ROOT)])
    env = {"PYTHONPATH": path, "RAY_AIR_NEW_OUTPUT": "0"}
    ray.init(num_cpus=MAX_CONCURRENT, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})  # fmt: skip


def measure(args: Any) -> Result:
    import ray

    table = json.loads(Path(args.table).read_text())
    keys = table["params"]
    configs = complete(table)
    surrogate = Surrogate(configs, keys)
    finals = sorted(float(c["fid"][:, -1].mean()) for c in configs)
    best, top = finals[0], float(np.quantile(finals, TOP_FRACTION))
    names = args.strategies or list(STRATEGIES)
    start_ray()
    runs: dict[str, list[Result]] = {s: [] for s in names}
    with tempfile.TemporaryDirectory() as storage:
        for seed in range(args.repeats):
            for strategy in names:
                t0 = time.perf_counter()
                rows = (
                    grid_rows(seed, surrogate, args.budget)
                    if strategy == "grid"
                    else replay(strategy, seed, surrogate, args.budget, storage)
                )
                run = judge(rows, surrogate, seed, best, top)
                runs[strategy].append(run | {"seed": seed, "wall_s": time.perf_counter() - t0})
                print(f"{strategy} seed {seed}: regret {run['regret']:+.3f}", flush=True)
    ray.shutdown()
    raw = {
        "table": _relative(Path(args.table)),
        "budget_steps": args.budget,
        "repeats": args.repeats,
        "table_best": best,
        "top_threshold": top,
        "surrogate": quality(configs, keys),
        "rungs": table_rungs(configs),
        "runs": runs,
    }
    return harness.new(args, {name: STRATEGIES[name] for name in names}, raw)


def summarise(result: Result) -> Result:
    """Each strategy's regret [95 %], its share of runs that stopped a top-10 % configuration,
    and the verdicts: the default against random search, the previous default and the grid, and
    the best early-stopping arm (chosen after the runs, no correction for the choice) against
    the default."""
    raw, arms = result["raw"], {}
    for name, runs in raw["runs"].items():
        mean, low, high = mean_interval([r["regret"] for r in runs])
        cut = sum(r["stopped_top"] > 0 for r in runs)
        arms[name] = {
            "regret": mean, "regret_ci": [low, high], "runs": len(runs),
            "cut_top_share": cut / len(runs), "trials": statistics.fmean(r["trials"] for r in runs),
            "steps": statistics.fmean(r["steps"] for r in runs),
        }  # fmt: skip
    best = min(arms, key=lambda a: arms[a]["regret"])
    verdicts = []
    # the default (tuner.run's): TPE without early stopping, against the other plain ways and the
    # previous default; then whether the best early-stopping arm beats it (ASHA's condition)
    for other in ("random_fifo", "tpe_asha", "grid"):
        if DEFAULT in arms and other in arms:
            holds, evidence = _difference(raw["runs"][DEFAULT], raw["runs"][other])
            claim = f"the default ({DEFAULT}) has a lower regret than {other} at equal compute"
            verdicts.append(verdict(claim, holds, evidence))
    stopping = [a for a in arms if a in EARLY_STOPPING]
    early = min(stopping, key=lambda a: arms[a]["regret"], default=None)
    if early is not None and DEFAULT in arms:
        holds, evidence = _difference(raw["runs"][early], raw["runs"][DEFAULT])
        claim = f"early stopping at its best ({early}) has a lower regret than {DEFAULT}"
        verdicts.append(verdict(claim, holds, evidence))
    if DEFAULT in arms:  # the confirmation's worth: its pick against the search's own best
        runs = raw["runs"][DEFAULT]
        gain, low, high = paired_improvement(
            [r["regret"] for r in runs], [r["search_pick_regret"] for r in runs], "min"
        )
        verdicts.append(verdict(
            f"confirming the top {CONFIRM} on {CONFIRM_SEEDS} fresh seeds lowers the default's regret against taking its "
            "best trial as it stands", direction(low, high), f"lower by {ci(gain, low, high)} FID, paired over {len(runs)} runs",
        ))  # fmt: skip
    q = raw["surrogate"]
    verdicts.append(verdict(
        "the surrogate ranks held-out configurations like the table (Spearman ρ ≥ 0.7)",
        q["spearman"] >= 0.7, f"ρ {q['spearman']:.2f}, MAE {q['mae']:.2f} FID (seed std "
        f"{q['seed_std']:.2f}) over {q['configurations']} configurations, {q['folds']}-fold",
    ))  # fmt: skip
    rows = [[name, ci(a["regret"], *a["regret_ci"]), f"{100 * a['cut_top_share']:.0f} %", f"{a['trials']:.1f}", f"{a['steps']:.0f}"]
            for name, a in arms.items()]  # fmt: skip
    body = [f"`{result['command']}` — each strategy {raw['repeats']} times on the surrogate of `{raw['table']}`, "
            f"{raw['budget_steps']} training steps each; regret: the confirmed winner's true mean FID minus the table's "
            f"best ({raw['table_best']:.3f}), 95 % t interval over the repeats.",
            table(["strategy", "regret [95 %]", "runs that stopped a top-10 % configuration", "trials", "steps"], rows)]  # fmt: skip
    mean, seeds = raw["rungs"]["mean"]["rungs"], raw["rungs"]["per_seed"]
    body += [
        "Each evaluation's rank correlation (Spearman ρ) with the FID at step "
        f"{raw['rungs']['mean']['final_step']} over the table's {raw['rungs']['mean']['trials']} configurations: of their "
        "seed-mean FID [95 %], and within each training seed (what one search sees).",
        table(["step", "ρ of the seed mean [95 %]", *(f"ρ seed {i}" for i in range(len(seeds)))],
              [[str(r["step"]), ci(r["rho"], *r["ci"]), *(f"{s['rungs'][i]['rho']:.2f}" for s in seeds)]
               for i, r in enumerate(mean)]),
    ]  # fmt: skip
    long = long_ranking(json.loads((harness.ROOT / raw["table"]).read_text()))
    if long:
        body += [
            f"Whether the ranking at step {FINAL} holds at 3× longer training: within each training seed "
            "whose long runs are done, and of the seeds' mean FID, Spearman ρ of the FID at each step with the FID at "
            "the long runs' end [95 %]." + _best_line(long.get("mean", {}).get("best")),
            table(["training seed", "configurations", *(f"ρ at step {r['step']}" for r in next(iter(long.values()))["rungs"])],
                  [[seed, str(res["trials"]), *(ci(r["rho"], *r["ci"]) if r["rho"] is not None else "-" for r in res["rungs"])]
                   for seed, res in long.items()]),
        ]  # fmt: skip
        at_final = [res["rungs"][0] for seed, res in long.items() if seed != "mean"]
        reversed_ = any(r["ci"] is not None and r["ci"][1] < 0 for r in at_final)
        holds = True if all(r["keeps_order"] for r in at_final) else False if reversed_ else None
        verdicts.append(verdict(
            f"the ranking at the search's last step ({FINAL}) holds at 3× longer training (ρ above 0 at 95 % in every "
            "training seed measured)", holds, "; ".join(f"seed {seed}: ρ {ci(r['rungs'][0]['rho'], *r['rungs'][0]['ci'])} over {r['trials']}"
                                for seed, r in long.items()),
        ))  # fmt: skip
    summary = {"arms": arms, "best": best, "default": DEFAULT, "long_ranking": long}
    return harness.page(result, TITLE, body, verdicts, summary=summary)


def _best_line(best: Result | None) -> str:
    """Whether the best configuration at step FINAL (seeds' mean) is still the best at the end."""
    if best is None:
        return ""
    said = "also" if best["same"] else f"not (the best there: FID {best['best_end']:.2f})"
    return (f" The best configuration at step {FINAL} by the seeds' mean (FID {best['at_final']:.2f}) is {said} the "
            f"best at step {best['end']}, where its FID is {best['its_end']:.2f}.")  # fmt: skip


def _relative(path: Path) -> str:
    """The table's path as the results file records it: relative to the repository."""
    path = path.resolve()
    return str(path.relative_to(harness.ROOT)) if path.is_relative_to(harness.ROOT) else str(path)


def _difference(a: list[Result], b: list[Result]) -> tuple[bool | None, str]:
    """Whether a's mean regret is below b's: Welch's 95 % interval of b − a (independent runs)."""
    from scipy.stats import ttest_ind

    ra, rb = [r["regret"] for r in a], [r["regret"] for r in b]
    test = ttest_ind(rb, ra, equal_var=False)
    low, high = test.confidence_interval(0.95)
    gain = statistics.fmean(rb) - statistics.fmean(ra)
    holds = True if low > 0 else False if high < 0 else None
    return holds, f"regret lower by {ci(gain, low, high)} FID over {len(ra)} and {len(rb)} runs"


def main() -> int | None:
    p = harness.parser(NAME, __doc__)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--budget", type=int, default=BUDGET, help="training steps per search")
    p.add_argument("--strategies", nargs="+", choices=list(STRATEGIES))
    p.add_argument("--table", type=Path, default=TABLE, help="the learning-curve table")
    args = p.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    if args.smoke:
        args.repeats, args.strategies = 2, args.strategies or ["tpe_asha", "random_fifo", "grid"]
    harness.finish(args, measure(args), summarise)


if __name__ == "__main__":
    sys.exit(main())
