"""The search itself: TPE + ASHA vs random search vs the grid of published points (issue 7).

Each arm is the CLI, run as a subprocess from a scratch folder with its own Ray storage and
MLflow database, on the default task of the spaces (digits_biased, IMAGE_BUDGET: 300 steps per
trial, FID of 500 samples every 100 steps), so every FID is comparable:

    tpe_asha   python -m tuner.run --space debias_family --set eval.growth=1 --seed S  (TPE + ASHA)
    random     python -m tuner.run --space debias_family --search random --scheduler fifo --seed S
    grid       python -m tuner.run --space baselines --scheduler fifo      (the 8 published points)

for search seeds S in --seeds (the grid has no search seed: it runs once). Every result a trial
reported is read back from Ray's <experiment>/trial_*/result.json and all results of a search
are put in the order they were reported (Ray's timestamp; ties by the trial's own clock). The
compute spent up to a result is the sum over trials of the steps each had trained at its latest
report by then (an ASHA-stopped trial counts the steps it ran; a running trial counts its last
reported step, so compute is a lower bound by at most eval.every per other running trial). The
best-so-far FID is a function of that compute. The reference is the best FID any run of any arm
found; a run "reaches" when its best-so-far is <= 1.05 x reference, and its compute-to-5% is the
compute at that result (or never). The grid's order of points is arbitrary, so its compute-to-5%
is also given averaged over all orders of its points run one after another. Compute is also
reported in trial-seconds (Ray's time_total_s of each trial, setup included, summed the same way),
since trials differ in cost per step (the TIW discriminator, the contrastive term). The target
(TPE + ASHA needs <= 25 % of the grid's compute) is judged on the mean over search seeds and only
when every seed reaches; the same table at 10, 15 and 20 % bands is given as band_sensitivity.

Retrain: the best.json of the TPE + ASHA run whose best FID is lowest and the best.json of the grid
are each trained again with `python -m tuner.train --config best.json --set seed=K --quiet` for
fresh training seeds K (--retrain-seeds; the searches trained with seed 0), and their final
eval/fid compared. The spread of those FIDs over seeds is the noise against which the search's
differences are judged (a search's best is also the minimum of many noisy evaluations).

    .venv/bin/python bench/search_compare.py            # writes bench/results/search_compare.*
    .venv/bin/python bench/search_compare.py --smoke    # tuner.run --smoke-test, to /tmp
    .venv/bin/python bench/search_compare.py --resummarise   # retrain spread, noise, verdicts

Each finished arm run and each retrain is cached under --cache, so a rerun after an interruption
redoes only what did not finish (an unfinished arm's scratch folder is removed and it starts
again, so no search is a resumed one); wall_s_runs_sum adds up the cached runs' wall times.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
from harness import ROOT, Result, paired, pm, verdict

from tuner.stats import mean_std

NAME = "search_compare"
NOTE = (
    "at this budget the default task cannot rank members of the family finer than the seed noise; "
    "a search that should resolve them needs more samples per FID, longer trials or several seeds "
    "per trial."
)
METRIC = "eval/fid"
BAND = 0.05  # within 5 % of the best FID any run found
TARGET_RATIO = 0.25  # TPE + ASHA compute-to-5% <= 25 % of the grid's
SENSITIVITY_BANDS = (0.05, 0.10, 0.15, 0.20)

ARMS: dict[str, list[str]] = {
    # Every arm evaluates every 100 steps (the fifo arms' cadence), so that the arms' FIDs and
    # compute line up (and as the committed results were measured, before eval.growth existed).
    "tpe_asha": ["--space", "debias_family", "--set", "eval.growth=1"],
    "random": ["--space", "debias_family", "--search", "random", "--scheduler", "fifo"],
    "grid": ["--space", "baselines", "--scheduler", "fifo"],
}
SEEDED = ("tpe_asha", "random")  # the grid has no search seed
COLORS = {"tpe_asha": "tab:blue", "random": "tab:orange", "grid": "tab:green"}
LABELS = {"tpe_asha": "TPE + ASHA", "random": "random, FIFO", "grid": "grid of baselines"}


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _cmd_text(args: list[str]) -> str:
    return "python " + shlex.join(args)


# -- one search -----------------------------------------------------------------------------------
def _read_trials(exp: Path, param_keys: list[str]) -> list[dict[str, Any]]:
    """Every trial's reported results from Ray's result.json (one JSON object per line)."""
    trials = []
    for folder in sorted(exp.glob("trial_*")):
        file = folder / "result.json"
        if not file.exists():
            continue
        rows, config = [], {}
        for line in file.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            config = r.get("config", config)
            fid = r.get(METRIC)
            rows.append(
                {
                    "step": int(r["step"]),
                    "fid": float(fid) if isinstance(fid, (int, float)) else float("nan"),
                    "timestamp": int(r["timestamp"]),
                    "time_total_s": float(r["time_total_s"]),
                }
            )
        trials.append(
            {
                "trial": folder.name.removeprefix("trial_"),
                "params": {k: config.get(k) for k in param_keys},
                "results": rows,
            }
        )
    return trials


def run_arm(arm: str, seed: int | None, scratch: Path, smoke: bool) -> dict[str, Any]:
    """One search as a subprocess in a fresh scratch folder; its trials' results read back."""
    shutil.rmtree(scratch, ignore_errors=True)  # an unfinished earlier attempt starts again
    scratch.mkdir(parents=True)
    args = ["-m", "tuner.run", *ARMS[arm]]
    if seed is not None:
        args += ["--seed", str(seed)]
    if smoke:
        args += ["--smoke-test"] + ([] if arm == "grid" else ["--num-samples", "2"])
    storage, db = scratch / "ray_results", scratch / "mlflow.db"
    full = [*args, "--storage", str(storage), "--mlflow-uri", f"sqlite:///{db}"]
    t0 = time.perf_counter()
    with open(scratch / "output.txt", "w") as log:
        proc = subprocess.run(
            [sys.executable, *full], cwd=scratch, env=_env(), stdout=log, stderr=subprocess.STDOUT
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (scratch / "output.txt").read_text()[-3000:]
        raise RuntimeError(f"{_cmd_text(full)} exited {proc.returncode}:\n{tail}")
    (exp,) = [p.parent for p in storage.glob("*/search.json")]
    plan = json.loads((exp / "search.json").read_text())["plan"]
    best = json.loads((exp / "best.json").read_text())
    return {
        "arm": arm,
        "seed": seed,
        "command": _cmd_text(args) + " --storage DIR --mlflow-uri sqlite:///DIR/mlflow.db",
        "wall_s": wall,
        "experiment": exp.name,
        "plan": {k: plan[k] for k in ("search", "scheduler", "trials", "max_steps", "eval_every")},
        "params": list(plan["params"]),
        "best_json": best,
        "leaderboard": (exp / "leaderboard.txt").read_text(),
        "trials": _read_trials(exp, list(plan["params"])),
    }


# -- analysis -------------------------------------------------------------------------------------
def events(run: dict[str, Any]) -> list[tuple[int, int, float, float]]:
    """All results of a search in report order: (trial index, step, fid, time_total_s)."""
    out = []
    for i, t in enumerate(run["trials"]):
        rows = t["results"]
        if not rows:
            continue
        # A trial's start on a float clock: its integer timestamps bound it from below.
        start = max(r["timestamp"] - r["time_total_s"] for r in rows)
        for r in rows:
            key = (r["timestamp"], start + r["time_total_s"], i, r["step"])
            out.append((key, i, r["step"], r["fid"], r["time_total_s"]))
    out.sort(key=lambda e: e[0])
    return [e[1:] for e in out]


def curve(run: dict[str, Any]) -> dict[str, list[float]]:
    """Best-so-far FID against cumulative steps and trial-seconds, one point per result."""
    steps: dict[int, int] = {}
    secs: dict[int, float] = {}
    best = math.inf
    c_steps, c_secs, c_best = [], [], []
    for i, step, fid, total_s in events(run):
        steps[i] = max(steps.get(i, 0), step)  # a retried trial does not count twice
        secs[i] = max(secs.get(i, 0.0), total_s)
        if math.isfinite(fid):
            best = min(best, fid)
        c_steps.append(sum(steps.values()))
        c_secs.append(sum(secs.values()))
        c_best.append(best)
    return {"steps": c_steps, "trial_s": c_secs, "best": c_best}


def reach(c: dict[str, list[float]], threshold: float) -> dict[str, Any]:
    """Compute at the first result whose best-so-far is <= threshold (None: never)."""
    for k, b in enumerate(c["best"]):
        if b <= threshold:
            return {"steps": c["steps"][k], "trial_s": round(c["trial_s"][k], 1), "reached": True}
    return {"steps": None, "trial_s": None, "reached": False}


def grid_over_orders(run: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The grid's compute-to-threshold averaged over every order of its points, run in turn."""
    cost, hit = [], []
    for t in run["trials"]:
        rows = t["results"]
        cost.append(max((r["step"] for r in rows), default=0))
        hit.append(next((r["step"] for r in rows if r["fid"] <= threshold), None))
    if all(h is None for h in hit):
        return {"mean_steps": None, "min_steps": None, "max_steps": None, "orders": 0}
    totals = []
    for order in itertools.permutations(range(len(cost))):
        spent = 0
        for i in order:
            if hit[i] is not None:
                totals.append(spent + hit[i])
                break
            spent += cost[i]
    return {
        "mean_steps": float(np.mean(totals)),
        "min_steps": int(min(totals)),
        "max_steps": int(max(totals)),
        "orders": len(totals),
    }


def compact(c: dict[str, list[float]]) -> list[list[float]]:
    """[steps, trial_s, best] where the best-so-far improves, plus the last result."""
    out, last = [], math.inf
    n = len(c["best"])
    for k in range(n):
        if c["best"][k] < last or k == n - 1:
            out.append([c["steps"][k], round(c["trial_s"][k], 1), round(c["best"][k], 4)])
            last = c["best"][k]
    return out


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": len(values)}


# -- retrain --------------------------------------------------------------------------------------
def retrain(config: dict[str, Any], seed: int, scratch: Path) -> dict[str, Any]:
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    cfg = scratch / "best.json"
    cfg.write_text(json.dumps(config, indent=2) + "\n")
    out = scratch / "out"
    args = ["-m", "tuner.train", "--config", str(cfg), "--set", f"seed={seed}"]
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, *args, "--out", str(out), "--quiet"],
        cwd=scratch,
        env=_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    return {
        "seed": seed,
        "final_fid": float(m["final"][METRIC]),
        "history_fid": [[h["step"], float(h[METRIC])] for h in m["history"]],
        "wall_s": wall,
    }


# -- plot -----------------------------------------------------------------------------------------
def plot(result: dict[str, Any], curves: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    seen = set()
    for key, c in curves.items():
        arm = key.split("/")[0]
        label = LABELS[arm] if arm not in seen else None
        seen.add(arm)
        ax0.step(c["steps"], c["best"], where="post", color=COLORS[arm], label=label, lw=1.3)
        hit = result["table"][key]["to_5pct_of_best"]["steps"]
        if hit is not None:
            ax0.plot([hit], [c["best"][c["steps"].index(hit)]], "o", color=COLORS[arm], ms=4)
    ref = result["reference"]["fid"]
    ax0.axhline(ref, color="k", lw=0.8, ls=":", label=f"best found {ref:.3f}")
    ax0.axhline(
        result["reference"]["threshold"], color="k", lw=1, ls="--", label="within 5 % of it"
    )
    lows = [b for c in curves.values() for b in c["best"] if math.isfinite(b)]
    band = result["reference"]["threshold"] - ref
    ax0.set_ylim(ref - band, max(min(max(lows), 2 * ref), ref + 4 * band))
    ax0.set_xlabel("cumulative training steps over all trials")
    ax0.set_ylabel(f"best-so-far {METRIC}")
    ax0.set_title("best FID found vs compute (one line per search run; dot: within 5 %)")
    ax0.legend(fontsize=8)
    rt = result["retrain"]
    for x, key in enumerate(("tpe_asha_best", "grid_best")):
        r = rt[key]
        fids = [s["final_fid"] for s in r["seeds"]]
        ax1.scatter([x] * len(fids), fids, color=COLORS[key.split("_best")[0]], zorder=3)
        ax1.errorbar(
            x + 0.15, r["final_fid"]["mean"], yerr=r["final_fid"]["std"], fmt="k_", capsize=4
        )
        ax1.scatter([x - 0.15], [r["search_best_fid"]], marker="x", color="0.4")
    ax1.scatter([], [], marker="x", color="0.4", label="its best during the search")
    ax1.errorbar([], [], yerr=[], fmt="k_", capsize=4, label="mean ± std over seeds")
    ax1.set_xticks([0, 1])
    ax1.set_xticklabels([f"search best\n{rt['tpe_asha_best']['label']}", rt["grid_best"]["label"]])
    ax1.set_xlim(-0.6, 1.6)
    ax1.set_ylabel(f"final {METRIC}, fresh training seeds")
    ax1.set_title("retrained from best.json")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# -- main -----------------------------------------------------------------------------------------
def _label(best: dict[str, Any]) -> str:
    w = best.get("weighting")
    if w == "parametric":
        return (
            f"p={best['weighting.p']:.2f} k={best['weighting.k']:.2f} "
            f"clamp={best['weighting.clamp']:g}"
        )
    return str(w)


def noise_of(result: Result) -> dict[str, Any]:
    """The FID's noise over training seeds (the retrained winners) against the search's gaps."""
    a, b = (result["retrain"][k]["final_fid"] for k in ("tpe_asha_best", "grid_best"))
    ref = result["reference"]
    diff = a["mean"] - b["mean"]
    se = math.sqrt((a["std"] ** 2) / a["n"] + (b["std"] ** 2) / b["n"]) if a["n"] > 1 else None
    noise_std = math.sqrt((a["std"] ** 2 + b["std"] ** 2) / 2) if a["n"] > 1 else None
    band = ref["threshold"] - ref["fid"]
    gap = result["retrain"]["tpe_asha_best"]["search_best_fid"] - result["grid_best"]["fid"]
    return {
        "retrain_seed_std_pooled": noise_std,
        "band_width": band,
        "band_exceeds_noise_std": band > noise_std if noise_std else None,
        "search_best_gap_tpe_minus_grid": gap,
        "search_best_gap_exceeds_noise_std": abs(gap) > noise_std if noise_std else None,
        "retrain_mean_diff_tpe_minus_grid": diff,
        "retrain_diff_std_error": se,
        "retrain_diff_t": diff / se if se else None,
        "retrain_diff_exceeds_2se": abs(diff) > 2 * se if se else None,
        "note": "noise = std of final eval/fid over fresh training seeds (training and the "
        "500-sample FID together); a search's best is the minimum over many such noisy values",
    }


def cdl_split(result: Result, step: int) -> tuple[list[float], list[float]]:
    """FIDs at `step` of the debias_family trials without and with the contrastive term."""
    off, on = [], []
    for key, trials in result["trials"].items():
        for t in trials if result["table"][key]["arm"] in SEEDED else []:
            fid = dict(t["fid_by_step"]).get(step)
            if fid is not None:
                (on if t["params"]["cdl.coef"] > 0 else off).append(fid)
    return off, on


def _f(x: float | None, spec: str) -> str:
    return "— (one retrain seed)" if x is None else format(x, spec)


def summarise(result: Result) -> Result:
    """The retrained winners' spread, the FID's noise and the verdicts, from the stored runs."""
    for r in result["retrain"].values():
        r["final_fid"] = stats([s["final_fid"] for s in r["seeds"]])
    noise = result["noise"] = noise_of(result)
    ref, target, table = result["reference"], result["target"], result["table"]
    reached = result["summary"]["to_5pct_of_best"]
    grid, rt = table["grid"], result["retrain"]
    tpe, best = rt["tpe_asha_best"], rt["grid_best"]
    std = noise["retrain_seed_std_pooled"]
    gap_vs = {True: "more than", False: "less than", None: "against"}
    verdicts = [
        verdict(
            f"TPE + ASHA gets within {100 * ref['band']:g} % of the best FID any search found "
            f"for at most {100 * TARGET_RATIO:g} % of the grid's compute (mean over search "
            "seeds; every seed must reach)",
            target["met"],
            f"reached in {reached['tpe_asha']['steps']['reached']} search seeds (random search "
            f"{reached['random']['steps']['reached']}); the grid in "
            f"{grid['to_5pct_of_best']['steps'] or 'never'} steps of its {grid['total_steps']}",
        ),
        verdict(
            f"The lowest FID any evaluation reached came from the grid's {best['label']} point",
            ref["run"] == "grid",
            f"{ref['fid']:.3f} in the {ref['run']}; the best TPE + ASHA run's "
            f"{tpe['search_best_fid']:.3f}, a gap of {noise['search_best_gap_tpe_minus_grid']:.3f}"
            f" ({gap_vs[noise['search_best_gap_exceeds_noise_std']]} the FID's seed std, "
            f"{_f(std, '.2f')})",
        ),
        verdict(
            f"The {100 * ref['band']:g} % band is narrower than the noise of the metric itself "
            "(the std of a configuration's final FID over training seeds)",
            None if std is None else not noise["band_exceeds_noise_std"],
            f"band {noise['band_width']:.3f} FID; seed std {_f(std, '.2f')} (pooled over the "
            "two retrained configurations)",
        ),
    ]
    holds, text = paired(
        [s["final_fid"] for s in tpe["seeds"]], [s["final_fid"] for s in best["seeds"]], "min"
    )
    verdicts.append(
        verdict(
            f"Retrained on fresh training seeds, the search's best ({tpe['label']}) beats the "
            f"grid's best ({best['label']})",
            holds,
            f"final FID {pm(tpe['final_fid']['mean'], tpe['final_fid']['std'])} against "
            f"{pm(best['final_fid']['mean'], best['final_fid']['std'])}; difference "
            f"{noise['retrain_mean_diff_tpe_minus_grid']:+.2f} ± "
            f"{_f(noise['retrain_diff_std_error'], '.2f')} (standard error); paired by seed, "
            f"improvement {text} (95 % t)",
        )
    )
    steps = sorted({s for ts in result["trials"].values() for t in ts for s, _ in t["fid_by_step"]})
    worse, parts = [], []
    for step in steps:
        off, on = cdl_split(result, step)
        if off and on:
            worse.append(min(on) > max(off))
            parts.append(f"step {step}: {min(on):.2f}–{max(on):.2f} against {min(off):.2f}–"
                         f"{max(off):.2f}")  # fmt: skip
    asha = [t for k, ts in result["trials"].items() if table[k]["arm"] == "tpe_asha" for t in ts]
    cdl = [t for t in asha if t["params"]["cdl.coef"] > 0]
    stopped = sum(max(s for s, _ in t["fid_by_step"]) == steps[0] for t in cdl)
    verdicts.append(
        verdict(
            "Every trial with the contrastive term (cdl.coef ≥ 0.1) has a worse FID than every "
            "trial without it, at every step both reached",
            all(worse) if worse else None,
            "; ".join(parts or ["no step with trials of both"]) + f"; ASHA stopped {stopped} of "
            f"the {len(cdl)} such TPE + ASHA trials at step {steps[0]}",
        )
    )
    off, _ = cdl_split(result, steps[-1])
    span = max(off) - min(off) if len(off) > 1 else None
    verdicts.append(
        verdict(
            f"Trials without the contrastive term that ran all {steps[-1]} steps end within one "
            "seed std of the FID of each other",
            None if span is None or std is None else span < std,
            f"{len(off)} trials, final FID {_f(min(off, default=None), '.2f')}–"
            f"{_f(max(off, default=None), '.2f')} (a span of {_f(span, '.2f')}); seed std "
            f"{_f(std, '.2f')}",
        )
    )
    searches = [t for t in table.values() if t["arm"] in SEEDED]
    verdicts.append(
        verdict(
            f"A {searches[0]['trials']}-trial search spends more training steps than the whole "
            f"{grid['trials']}-point grid",
            all(t["total_steps"] > grid["total_steps"] for t in searches),
            f"searches {min(t['total_steps'] for t in searches)}–"
            f"{max(t['total_steps'] for t in searches)} steps; the grid {grid['total_steps']}",
        )
    )
    result["verdicts"] = verdicts
    result["notes"] = [{"date": "2026-12-02", "text": NOTE}]  # written by hand, not computed
    return result


def main() -> int:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2], cache=True)
    parser.add_argument("--retrain-seeds", type=int, nargs="+", default=[101, 102, 103])
    args = parser.parse_args()
    if args.resummarise:
        harness.resummarise(args, summarise)
        return 0
    if args.smoke:
        args.seeds, args.retrain_seeds = [0], args.retrain_seeds[:1]
        args.cache = args.cache / "smoke"
        shutil.rmtree(args.cache, ignore_errors=True)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t_start = time.perf_counter()

    runs: dict[str, dict[str, Any]] = {}
    plan = [(arm, s) for arm in SEEDED for s in args.seeds] + [("grid", None)]
    for arm, seed in plan:
        key = arm if seed is None else f"{arm}/seed{seed}"
        file = cache / f"{key.replace('/', '_')}.json"
        if file.exists():
            runs[key] = json.loads(file.read_text())
            print(f"{key}: cached", flush=True)
            continue
        print(f"{key}: running", flush=True)
        run = run_arm(arm, seed, cache / "scratch" / key.replace("/", "_"), args.smoke)
        file.write_text(json.dumps(run))
        runs[key] = run
        print(f"{key}: {len(run['trials'])} trials in {run['wall_s']:.0f}s", flush=True)

    curves = {k: curve(r) for k, r in runs.items()}
    ref_key = min(curves, key=lambda k: curves[k]["best"][-1])
    ref = curves[ref_key]["best"][-1]
    threshold = (1 + BAND) * ref
    grid_best = curves["grid"]["best"][-1]
    grid_match = (1 + BAND) * grid_best  # secondary: match the best published point
    table: dict[str, Any] = {}
    for k, r in runs.items():
        c = curves[k]
        table[k] = {
            "arm": r["arm"],
            "seed": r["seed"],
            "best_fid": round(c["best"][-1], 4),
            "to_5pct_of_best": reach(c, threshold),
            "to_5pct_of_grid_best": reach(c, grid_match),
            "total_steps": c["steps"][-1],
            "total_trial_s": round(c["trial_s"][-1], 1),
            "trials": len(r["trials"]),
            "stopped_early": sum(
                1 for t in r["trials"] if t["results"][-1]["step"] < r["plan"]["max_steps"]
            ),
            "wall_s": round(r["wall_s"], 1),
        }
    grid_orders = {
        "to_5pct_of_best": grid_over_orders(runs["grid"], threshold),
        "to_5pct_of_grid_best": grid_over_orders(runs["grid"], grid_match),
    }

    def per_arm(arm: str, crit: str, unit: str) -> dict[str, Any]:
        rows = [t for t in table.values() if t["arm"] == arm]
        vals = [t[crit][unit] for t in rows if t[crit]["reached"]]
        return {"reached": f"{len(vals)}/{len(rows)}", **stats(vals)}

    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for crit in ("to_5pct_of_best", "to_5pct_of_grid_best"):
        summary[crit] = {
            arm: {u: per_arm(arm, crit, u) for u in ("steps", "trial_s")} for arm in ARMS
        }
        g = table["grid"][crit]
        g_total = table["grid"]["total_steps"]
        ratios[crit] = {}
        for arm in SEEDED:
            rows = [t for t in table.values() if t["arm"] == arm]
            per_seed = {}
            for t in rows:
                s = t[crit]["steps"]
                per_seed[f"seed{t['seed']}"] = {
                    "vs_grid_as_run": (s / g["steps"]) if s is not None and g["reached"] else None,
                    "vs_grid_all_orders_mean": (
                        s / grid_orders[crit]["mean_steps"]
                        if s is not None and grid_orders[crit]["mean_steps"]
                        else None
                    ),
                    "vs_grid_total": s / g_total if s is not None else None,
                }
            reached = all(t[crit]["reached"] for t in rows)
            mean_s = summary[crit][arm]["steps"]["mean"]
            ratios[crit][arm] = {
                "per_seed": per_seed,
                "all_seeds_reached": reached,
                "mean_vs_grid_as_run": (mean_s / g["steps"] if reached and g["reached"] else None),
                "mean_vs_grid_all_orders_mean": (
                    mean_s / grid_orders[crit]["mean_steps"]
                    if reached and grid_orders[crit]["mean_steps"]
                    else None
                ),
                "grid_reached": g["reached"],
            }

    # The same question at wider bands: the 5 % band is narrower than the seed-to-seed noise.
    sensitivity: dict[str, Any] = {}
    for band in SENSITIVITY_BANDS:
        thr = (1 + band) * ref
        g_run = reach(curves["grid"], thr)["steps"]
        g_all = grid_over_orders(runs["grid"], thr)["mean_steps"]
        row: dict[str, Any] = {"threshold": thr, "grid_as_run": g_run, "grid_all_orders": g_all}
        for arm in SEEDED:
            per = [reach(curves[k], thr)["steps"] for k in runs if runs[k]["arm"] == arm]
            done = [v for v in per if v is not None]
            mean = float(np.mean(per)) if len(done) == len(per) else None
            row[arm] = {
                "steps_per_seed": per,
                "reached": f"{len(done)}/{len(per)}",
                "mean_steps": mean,
                "mean_vs_grid_as_run": mean / g_run if mean is not None and g_run else None,
                "mean_vs_grid_all_orders": mean / g_all if mean is not None and g_all else None,
            }
        sensitivity[f"{band:.2f}"] = row

    # Retrain the TPE + ASHA best (from its lowest run) and the grid's best over fresh seeds.
    tpe_key = min(
        (k for k in runs if runs[k]["arm"] == "tpe_asha"), key=lambda k: table[k]["best_fid"]
    )
    retrain_out: dict[str, Any] = {}
    for label, key in (("tpe_asha_best", tpe_key), ("grid_best", "grid")):
        config = runs[key]["best_json"]
        seeds = []
        for s in args.retrain_seeds:
            file = cache / f"retrain_{label}_seed{s}.json"
            if file.exists():
                seeds.append(json.loads(file.read_text()))
                print(f"retrain {label} seed {s}: cached", flush=True)
                continue
            r = retrain(config, s, cache / "scratch" / f"retrain_{label}_seed{s}")
            file.write_text(json.dumps(r))
            seeds.append(r)
            print(f"retrain {label} seed {s}: fid {r['final_fid']:.4f}", flush=True)
        retrain_out[label] = {
            "from": key,
            "label": _label(config),
            "config": {
                k: v
                for k, v in config.items()
                if k.startswith(("weighting", "noise", "tiw.strength", "cdl.coef"))
            },
            "search_best_fid": table[key]["best_fid"],
            "seeds": seeds,
        }
    r5 = ratios["to_5pct_of_best"]["tpe_asha"]
    met = r5["mean_vs_grid_as_run"] is not None and r5["mean_vs_grid_as_run"] <= TARGET_RATIO
    if r5["all_seeds_reached"] and not r5["grid_reached"]:
        met = True  # the grid never gets within 5 %: any finite compute is below 25 % of it
    target = {
        "criterion": "mean over search seeds of TPE + ASHA steps to reach <= 1.05 x best FID "
        "found, <= 0.25 x the grid's steps to reach it (as run); every seed must reach",
        "met": bool(met),
        "grid_reached": r5["grid_reached"],
        "tpe_asha_all_seeds_reached": r5["all_seeds_reached"],
        "mean_ratio_vs_grid_as_run": r5["mean_vs_grid_as_run"],
        "mean_ratio_vs_grid_all_orders": r5["mean_vs_grid_all_orders_mean"],
    }
    wall = time.perf_counter() - t_start
    result = {
        "command": harness.command(args),
        "arms": {
            arm: {
                "command": _cmd_text(["-m", "tuner.run", *ARMS[arm]])
                + (" --seed S" if arm in SEEDED else ""),
                "seeds": args.seeds if arm in SEEDED else None,
                "plan": next(r["plan"] for r in runs.values() if r["arm"] == arm),
                "params": next(r["params"] for r in runs.values() if r["arm"] == arm),
            }
            for arm in ARMS
        },
        "env": {"OMP_NUM_THREADS": "1", "cwd": "a scratch folder per run"},
        "reference": {
            "fid": ref,
            "run": ref_key,
            "band": BAND,
            "threshold": threshold,
            "note": "the lowest eval/fid of any evaluation (any step) of any trial of any run",
        },
        "grid_best": {"fid": grid_best, "threshold": grid_match},
        "table": table,
        "summary": summary,
        "grid_all_orders": grid_orders,
        "band_sensitivity": sensitivity,
        "ratios": ratios,
        "target": target,
        "retrain": retrain_out,
        "curves": {
            k: {"columns": ["cum_steps", "cum_trial_s", "best_fid"], "points": compact(c)}
            for k, c in curves.items()
        },
        "trials": {
            k: [
                {
                    "trial": t["trial"],
                    "params": t["params"],
                    "fid_by_step": [[x["step"], round(x["fid"], 4)] for x in t["results"]],
                }
                for t in r["trials"]
            ]
            for k, r in runs.items()
        },
        "leaderboards": {k: r["leaderboard"] for k, r in runs.items()},
        "wall_s_this_invocation": round(wall, 1),  # short when the runs came from the cache
        "wall_s_runs_sum": round(
            sum(r["wall_s"] for r in runs.values())
            + sum(s["wall_s"] for v in retrain_out.values() for s in v["seeds"]),
            1,
        ),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "wall times on a shared 2-core machine; compute is counted in training steps",
    }
    result = harness.finish(args, result, summarise)
    plot(result, curves, harness.out_path(args).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
