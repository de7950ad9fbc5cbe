"""The search itself: TPE + ASHA vs random search vs the grid of published points (issue 15, §5).

Each arm is the CLI as a user runs it (bench/searches.py, a fresh scratch folder each) on the
default task, with its confirmation stage: tpe_asha is `python -m tuner.run --space
debias_family --seed S` (bench/search_default.py's runs where it ran the same command), random
the same with `--search random --scheduler fifo`, the grid `--space baselines --scheduler fifo`
(the 8 published points, once); the FIFO arms evaluate at the same steps. Compute up to a result
is the steps (and trial-seconds) every trial had trained at its latest report by then, in
report order; a run reaches when its best-so-far FID is <= 1.05 x the best confirmed FID (the
lowest mean over the fresh seeds of any run's winner; also at 10-20 %). Target: TPE + ASHA's
compute to reach <= 25 % of the grid's, by the mean over search seeds and its 95 % t interval,
every seed reaching. Each run's winner is compared with the baseline and the grid's winner.

    .venv/bin/python bench/search_compare.py            # writes bench/results/search_compare.*
    .venv/bin/python bench/search_compare.py --smoke    # tuner.run --smoke-test, to /tmp
    .venv/bin/python bench/search_compare.py --resummarise   # everything again from the runs

Finished runs are cached under --cache (by command): a rerun redoes only the unfinished ones,
from scratch (no search is a resumed one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
import search_default
from claims import ci, direction, every, iv, mean_std, paired, pm, table, target_holds, verdict
from harness import Result
from searches import run_search

from tuner.stats import mean_interval

NAME = "search_compare"
TITLE = "The search: TPE + ASHA against random search and the grid of published points"
METRIC = "eval/fid"
BAND = 0.05  # within 5 % of the best confirmed FID
TARGET_RATIO = 0.25  # TPE + ASHA compute-to-5% <= 25 % of the grid's
SENSITIVITY_BANDS = (0.05, 0.10, 0.15, 0.20)
FORMAT = 2  # of a cached run (1: the runs before the confirmation stage)
# The FIFO arms evaluate where the default search does (eval.growth=3: its rungs), so that no arm
# gets more evaluations, i.e. more chances at a low search-time FID, than another.
ALIGNED = ["--set", "eval.growth=3"]
ARMS: dict[str, list[str]] = {
    "tpe_asha": search_default.DEFAULT,  # exactly the default search
    "random": ["--space", "debias_family", "--search", "random", "--scheduler", "fifo", *ALIGNED],
    "grid": ["--space", "baselines", "--scheduler", "fifo", *ALIGNED],
}
SEEDED = ("tpe_asha", "random")  # the grid has no search seed
COLORS = {"tpe_asha": "tab:blue", "random": "tab:orange", "grid": "tab:green"}
LABELS = {"tpe_asha": "TPE + ASHA", "random": "random, FIFO", "grid": "grid of baselines"}
WHOSE = {"tpe_asha": "every TPE + ASHA search", "random": "every random search",
         "grid": "the grid"}  # fmt: skip


def arm_args(arm: str, seed: int | None, smoke: bool) -> list[str]:
    """An arm's tuner.run arguments (the tpe_asha arm's are search_default's for the seed)."""
    extra = ["--smoke-test"] if smoke else []
    if arm == "tpe_asha":
        return search_default.default_args(seed, extra)
    return [*ARMS[arm], *([] if seed is None else ["--seed", str(seed)]), *extra]


# -- the runs -------------------------------------------------------------------------------------
def reusable(path: Path, smoke: bool) -> dict[int, Result]:
    """search_default's runs, by seed, that ran exactly the tpe_asha arm's command and finished."""
    runs = json.loads(path.read_text())["raw"]["runs"] if path.exists() else []
    return {r["seed"]: r for r in runs if r.get("args") == arm_args("tpe_asha", r["seed"], smoke)
            and r["returncode"] == 0 and r.get("trial_results")}  # fmt: skip


def run_arm(arm: str, seed: int | None, scratch: Path, smoke: bool) -> Result:
    """One search as a subprocess in a fresh scratch folder, read back, the folder removed."""
    shutil.rmtree(scratch, ignore_errors=True)  # an unfinished earlier attempt starts again
    try:
        run = run_search(arm_args(arm, seed, smoke), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if run["returncode"] != 0:
        raise RuntimeError(f"{run['command']} exited {run['returncode']}:\n{run['output_tail']}")
    return {"arm": arm, "seed": seed, "source": "run", **run}


def collect(args: argparse.Namespace) -> dict[str, Result]:
    """Every arm's run: reused from search_default's results, cached, or run now."""
    reuse, runs = reusable(Path(args.default_results), args.smoke), {}
    for arm, seed in [(arm, s) for arm in SEEDED for s in args.seeds] + [("grid", None)]:
        key = arm if seed is None else f"{arm}/seed{seed}"
        if arm == "tpe_asha" and seed in reuse:
            path = Path(args.default_results).resolve()
            shown = path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path
            runs[key] = {"arm": arm, "seed": seed, **reuse[seed], "source": f"{shown} (runs, seed {seed})"}  # fmt: skip
            print(f"{key}: reused from {runs[key]['source']}", flush=True)
            continue
        print(f"{key}: running {' '.join(arm_args(arm, seed, args.smoke))}", flush=True)
        scratch = harness.CACHE / NAME / "scratch" / key.replace("/", "_")
        runs[key] = harness.cached(
            harness.cache_dir(args), {"args": arm_args(arm, seed, args.smoke)}, {"format": FORMAT},
            lambda a=arm, s=seed, d=scratch: run_arm(a, s, d, args.smoke),
        )  # fmt: skip
        print(f"{key}: {runs[key]['trials']} trials in {runs[key]['wall_s']:.0f}s", flush=True)
    return runs


# -- compute against the best-so-far FID ----------------------------------------------------------
def events(run: Result) -> list[tuple[int, int, float, float]]:
    """All results of a search in report order: (trial index, step, fid, time_total_s)."""
    out = []
    for i, t in enumerate(run["trial_results"]):
        # A trial's start on a float clock: its integer timestamps bound it from below.
        start = max((r["timestamp"] - r["time_total_s"] for r in t["results"]), default=0)
        for r in t["results"]:
            key = (r["timestamp"], start + r["time_total_s"], i, r["step"])
            out.append((key, i, r["step"], r["fid"], r["time_total_s"]))
    return [e[1:] for e in sorted(out, key=lambda e: e[0])]


def curve(run: Result) -> dict[str, list[float]]:
    """Best-so-far FID against cumulative steps and trial-seconds, one point per result."""
    steps: dict[int, int] = {}
    secs: dict[int, float] = {}
    best, out = math.inf, {"steps": [], "trial_s": [], "best": []}
    for i, step, fid, total_s in events(run):
        steps[i] = max(steps.get(i, 0), step)  # a retried trial does not count twice
        secs[i] = max(secs.get(i, 0.0), total_s)
        best = min(best, fid) if math.isfinite(fid) else best
        for k, v in (("steps", sum(steps.values())), ("trial_s", sum(secs.values())), ("best", best)):  # fmt: skip
            out[k].append(v)
    return out


def reach(c: dict[str, list[float]], threshold: float) -> dict[str, Any]:
    """Compute at the first result whose best-so-far is <= threshold (None: never)."""
    for k, b in enumerate(c["best"]):
        if b <= threshold:
            return {"steps": c["steps"][k], "trial_s": round(c["trial_s"][k], 1), "reached": True}
    return {"steps": None, "trial_s": None, "reached": False}


def grid_over_orders(run: Result, threshold: float) -> dict[str, Any]:
    """The grid's compute-to-threshold averaged over every order of its points, run in turn."""
    cost = [max((r["step"] for r in t["results"]), default=0) for t in run["trial_results"]]
    hit = [next((r["step"] for r in t["results"] if r["fid"] <= threshold), None)
           for t in run["trial_results"]]  # fmt: skip
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
    return {"mean_steps": float(np.mean(totals)), "min_steps": int(min(totals)),
            "max_steps": int(max(totals)), "orders": len(totals)}  # fmt: skip


def spread_of(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": len(values)}


# -- the confirmation stage -----------------------------------------------------------------------
def label(config: dict[str, Any]) -> str:
    """A configuration in a few words: its weighting, and TIW / CDL where they are on."""
    text = str(config.get("weighting"))
    if text == "parametric":
        text = (f"p={config['weighting.p']:.2f} k={config['weighting.k']:.2f} clamp="
                f"{config['weighting.clamp']:g}" + (" norm" if config["weighting.normalize"] else ""))  # fmt: skip
    if config.get("tiw.strength"):
        text += f" tiw={config['tiw.strength']:.2f}"
    return text + (f" cdl={config['cdl.coef']:g}" if config.get("cdl.coef") else "")


def confirmed(run: Result) -> dict[str, Any] | None:
    """A run's confirmed winner against its baseline, from its verdict.json (None: none)."""
    v = run.get("verdict")
    if not v or not v.get("winner"):
        return None
    w, base = v["winner"], v["baseline"]
    return {
        "trial": w["trial"], "label": label(w["config"]), "seeds": v["seeds"],
        **{k: w[k] for k in ("values", "mean", "ci", "improvement", "improvement_ci")},
        "resolved": v["resolved"],
        "is_baseline": w["config"] == base["config"],  # the baseline was among the top trials
        "baseline": {"label": label(base["config"]), **{k: base[k] for k in ("values", "mean", "ci")}},
        "candidates": len(v["candidates"]),
    }  # fmt: skip


def reference_of(confirmation: dict[str, Any]) -> dict[str, Any]:
    """The best confirmed FID: the lowest mean of any run's confirmed winner."""
    means = {k: c["mean"] for k, c in confirmation.items() if c and c["mean"] is not None}
    if not means:
        raise ValueError("no run has a confirmed winner: there is no reference FID")
    key = min(means, key=means.get)
    return {"fid": means[key], "run": key, "label": confirmation[key]["label"], "band": BAND,
            "threshold": (1 + BAND) * means[key],
            "note": "the lowest mean eval/fid over the fresh seeds of any run's confirmed winner"}  # fmt: skip


def noise_of(runs: dict[str, Result], reference: dict[str, Any]) -> dict[str, Any]:
    """The FID's noise over fresh training seeds: the std of each confirmed configuration's
    final FIDs (each distinct configuration once), pooled, against the 5 % band."""
    configs: dict[str, list[float]] = {}
    for run in runs.values():
        v = run.get("verdict") or {}
        for c in [*v.get("candidates", []), v.get("baseline")]:
            values = [x for x in (c or {}).get("values", []) if x is not None]
            if len(values) > 1:
                configs[json.dumps(c["config"], sort_keys=True)] = values
    variances = [mean_std(vs)[1] ** 2 for vs in configs.values()]
    std = math.sqrt(float(np.mean(variances))) if variances else None
    band = reference["threshold"] - reference["fid"]
    return {"seed_std_pooled": std, "configurations": len(variances), "band_width": band,
            "band_exceeds_noise_std": None if std is None else band > std,
            "note": "std of final eval/fid over the confirmation's fresh training seeds (training "
            "and the 500-sample FID together); a search's best is the minimum of many such noisy "
            "values"}  # fmt: skip


# -- the summary ----------------------------------------------------------------------------------
def table_of(runs: dict[str, Result], curves: dict[str, dict], threshold: float) -> dict:
    """One row per run: its search-time best, compute to reach the threshold, totals."""
    out = {}
    for k, r in runs.items():
        c, trials = curves[k], r["trial_results"]
        out[k] = {
            "arm": r["arm"], "seed": r["seed"], "source": r["source"],
            "best_search_fid": round(c["best"][-1], 4), "to_5pct_of_best": reach(c, threshold),
            "total_steps": c["steps"][-1], "total_trial_s": round(c["trial_s"][-1], 1),
            "trials": len(trials), "wall_s": round(r["wall_s"], 1),
            "stopped_early": sum(t["results"][-1]["step"] < r["plan"]["max_steps"] for t in trials),
        }  # fmt: skip
    return out


def per_arm(table: dict[str, Any], confirmation: dict[str, Any], grid: dict[str, Any]) -> dict:
    """Per arm: how many runs reach and at what compute, its ratio to the grid's, how many runs'
    confirmed winners resolve against the baseline."""
    g_steps, orders, out = table["grid"]["to_5pct_of_best"]["steps"], grid["mean_steps"], {}
    for arm in ARMS:
        keys = [k for k, t in table.items() if t["arm"] == arm]
        done = [h for h in (table[k]["to_5pct_of_best"] for k in keys) if h["reached"]]
        resolved = sum(bool(confirmation[k] and confirmation[k]["resolved"]) for k in keys)
        out[arm] = {
            "runs": len(keys), "reached": f"{len(done)}/{len(keys)}",
            "all_reached": len(done) == len(keys),
            "steps": spread_of([h["steps"] for h in done]),
            "trial_s": spread_of([h["trial_s"] for h in done]),
            "vs_grid_as_run_per_seed": ([h["steps"] / g_steps for h in done] if g_steps else []) if len(done) == len(keys) else None,
            "vs_grid_all_orders_per_seed": [h["steps"] / orders for h in done] if orders else None,
            "resolved": f"{resolved}/{len(keys)}",
        }  # fmt: skip
    return out


def target_of(arms: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """TPE + ASHA's compute-to-5% over the grid's (as run): the mean over seeds with its 95 % t
    interval against 25 %; every seed must reach, and a grid that never reaches loses."""
    tpe, grid_hit = arms["tpe_asha"], table["grid"]["to_5pct_of_best"]
    mean = low = high = None
    if not tpe["all_reached"]:
        holds = False
    elif not grid_hit["reached"]:
        holds = True  # any finite compute is below 25 % of the grid's, which never reaches
    else:
        mean, low, high = mean_interval(tpe["vs_grid_as_run_per_seed"])
        holds = target_holds(low, high, TARGET_RATIO, at_least=False)
    return {
        "criterion": "mean over search seeds of TPE + ASHA's steps to reach <= 1.05 x the best "
        "confirmed FID, <= 0.25 x the grid's steps to reach it (as run), by its 95 % t interval; "
        "every seed must reach",
        "holds": holds, "grid_reached": grid_hit["reached"],
        "tpe_asha_all_seeds_reached": tpe["all_reached"],
        "ratio_per_seed": tpe["vs_grid_as_run_per_seed"], "mean_ratio": mean,
        "mean_ratio_ci": None if mean is None else [low, high],
    }  # fmt: skip


def sensitivity_of(runs: dict[str, Result], curves: dict[str, dict], ref: float) -> dict:
    """The same question at wider bands (the 5 % band may be narrower than the seed noise)."""
    out: dict[str, Any] = {}
    for band in SENSITIVITY_BANDS:
        thr = (1 + band) * ref
        g_run = reach(curves["grid"], thr)["steps"]
        g_all = grid_over_orders(runs["grid"], thr)["mean_steps"]
        row: dict[str, Any] = {"threshold": thr, "grid_as_run": g_run, "grid_all_orders": g_all}
        for arm in SEEDED:
            per = [reach(curves[k], thr)["steps"] for k in runs if runs[k]["arm"] == arm]
            done = [v for v in per if v is not None]
            mean = float(np.mean(per)) if per and len(done) == len(per) else None
            row[arm] = {
                "steps_per_seed": per, "reached": f"{len(done)}/{len(per)}", "mean_steps": mean,
                "mean_vs_grid_as_run": mean / g_run if mean is not None and g_run else None,
                "mean_vs_grid_all_orders": mean / g_all if mean is not None and g_all else None,
            }  # fmt: skip
        out[f"{band:.2f}"] = row
    return out


def summarise(result: Result) -> Result:
    """Everything from the stored runs: curves, the reference, the tables, the confirmation,
    the target and the verdicts."""
    runs = result["raw"]["runs"]
    curves = {k: curve(r) for k, r in runs.items()}
    s: dict[str, Any] = {"confirmation": {k: confirmed(r) for k, r in runs.items()}}
    ref = s["reference"] = reference_of(s["confirmation"])
    s["table"] = table_of(runs, curves, ref["threshold"])
    grid = s["grid_all_orders"] = grid_over_orders(runs["grid"], ref["threshold"])
    s["arms_summary"] = per_arm(s["table"], s["confirmation"], grid)
    s["target"] = target_of(s["arms_summary"], s["table"])
    s["band_sensitivity"] = sensitivity_of(runs, curves, ref["fid"])
    s["noise"] = noise_of(runs, ref)
    s["reused"] = [k for k, r in runs.items() if r["source"] != "run"]
    s["wall_s_runs_sum"] = round(sum(r["wall_s"] for r in runs.values()), 1)
    figures = [("search_compare.png", "search compute to reach the best confirmed FID, and the confirmed winners")]  # fmt: skip
    return harness.page(result, TITLE, body(result, s), verdicts_of(runs, s), figures=figures, summary=s)  # fmt: skip


def body(result: Result, s: dict[str, Any]) -> list:
    """The page's paragraphs and tables."""

    def fids(values: list[float | None]) -> str:
        return " ".join("—" if v is None else f"{v:.3f}" for v in values)

    def spread(x: dict[str, Any], spec: str) -> str:  # mean ± std of the runs that reached
        return "—" if not x["n"] else spec.format(x["mean"]) + (f" ± {spec.format(x['std'])}" if x["n"] > 1 else " (1 run)")  # fmt: skip

    def against_grid(a: dict[str, Any]) -> str:
        if a["mean_vs_grid_as_run"] is not None:
            return f"{a['mean_vs_grid_as_run']:.2f}×"
        return "—" if a["mean_steps"] is None else f"{a['mean_steps']:.0f} steps"

    ref, arms, conf, orders = (
        s["reference"],
        result["arms"],
        s["confirmation"],
        s["grid_all_orders"],
    )
    rows = [[k, f"{r['best_search_fid']:.3f}", f"{r['to_5pct_of_best']['steps']} ({r['to_5pct_of_best']['trial_s']:.0f} s)" if r["to_5pct_of_best"]["reached"] else "never",
             f"{r['total_steps']} ({r['total_trial_s']:.0f} s)", f"{r['stopped_early']}/{r['trials']}"] for k, r in s["table"].items()]  # fmt: skip
    won = [[k, c["label"], fids(c["values"]), iv(c["mean"], c["ci"]), fids(c["baseline"]["values"]), iv(c["improvement"], c["improvement_ci"]),
            "yes" if c["resolved"] else "no"] for k, c in conf.items() if c]  # fmt: skip
    per_arm = [[arm, a["reached"], spread(a["steps"], "{:.0f}"), spread(a["trial_s"], "{:.0f} s"), a["resolved"]] for arm, a in s["arms_summary"].items()]  # fmt: skip
    bands = [[f"{100 * float(band):.0f} %", f"{b['threshold']:.3f}", "never" if b["grid_as_run"] is None else str(b["grid_as_run"])] + [f"{b[a]['reached']}, " + against_grid(b[a]) for a in SEEDED]
             for band, b in s["band_sensitivity"].items()]  # fmt: skip
    at = {arm: f"`{a['command']}` ({a['plan']['trials']} trials{', search seeds ' + ', '.join(map(str, a['seeds'])) if a['seeds'] else ''}; "
          f"evaluated at steps {', '.join(map(str, a['plan']['eval_steps']))})" for arm, a in arms.items()}  # fmt: skip
    reused = f" The runs {', '.join(s['reused'])} are `bench/search_default.py`'s, reused." if s["reused"] else ""  # fmt: skip
    return [
        f"`{result['command']}` — {len(arms)} searches, each in a scratch folder of its own, on the default task (digits_biased, {arms['grid']['plan']['max_steps']} steps per trial), "
        f"each with its confirmation stage (the top trials and the baseline, constant ε-MSE, retrained on the fresh seeds {', '.join(map(str, conf[ref['run']]['seeds']))}): "
        f"TPE + ASHA {at['tpe_asha']}, random search without early stopping {at['random']} and the grid of the published points {at['grid']}.{reused} Reference: the best "
        f"confirmed FID, {ref['fid']:.3f} (the mean over the fresh seeds of the {ref['run']} winner, {ref['label']}); a search reaches when its best-so-far FID during the "
        f"search is ≤ {ref['threshold']:.3f} ({100 * ref['band']:g} % above). Compute = training steps (and trial-seconds) of the search stage, summed over trials in the order results were reported.",
        table(["search", "best FID in the search", "steps (trial-s) to reach 5 %", "total steps (trial-s)", "stopped early"], rows),
        "Each run's confirmed winner against the baseline on the fresh seeds (improvement: the baseline's FID minus the winner's, paired by seed, 95 % t interval):",
        table(["search", "confirmed winner", "FID per seed", "mean [95 %]", "baseline per seed", "improvement [95 %]", "resolved"], won),
        table(["arm", "runs reaching 5 %", "steps to 5 %", "trial-s to 5 %", "winner resolved"], per_arm),
        (f"The grid's order of points is arbitrary: averaged over all {orders['orders']} orders it reaches in {orders['mean_steps']:.0f} steps ({orders['min_steps']}–{orders['max_steps']})."
         if orders["orders"] else "The grid reaches in no order of its points: none of its trials does.") + " The same question for wider bands (reached seeds; where every seed "
        "reaches, its mean steps over the grid's as run, or the mean steps themselves where the grid never reaches):",
        table(["band", "threshold", "grid steps", "TPE + ASHA", "random"], bands),
    ]  # fmt: skip


# -- the verdicts ---------------------------------------------------------------------------------
def _f(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _target_verdict(s: dict[str, Any]) -> dict[str, Any]:
    target, arms, grid = s["target"], s["arms_summary"], s["table"]["grid"]
    if target["mean_ratio"] is not None:
        shown = f"ratio per seed {', '.join(f'{x:.2f}' for x in target['ratio_per_seed'])}, mean {ci(target['mean_ratio'], *target['mean_ratio_ci'])}"  # fmt: skip
    else:
        shown = ("no ratio: the grid ran all its points without reaching, so its compute to "
                 "reach is unbounded and any finite compute is within the target"
                 if target["tpe_asha_all_seeds_reached"] else "no ratio: not every seed reaches")  # fmt: skip
    steps, total = grid["to_5pct_of_best"]["steps"], f"{grid['trials']} points, {grid['total_steps']} steps"  # fmt: skip
    return verdict(
        f"TPE + ASHA gets within {100 * BAND:g} % of the best confirmed FID for at most "
        f"{100 * TARGET_RATIO:g} % of the grid's compute (mean over search seeds with its 95 % t "
        "interval; every seed must reach)",
        target["holds"],
        f"reached in {arms['tpe_asha']['reached']} search seeds (random search "
        f"{arms['random']['reached']}), TPE + ASHA's mean steps to reach {_f(arms['tpe_asha']['steps']['mean'], '.0f')}; "
        f"the grid {f'in {steps} steps of its {total}' if steps else f'never, in all its {total}'}; {shown}",
    )  # fmt: skip


def _improvement(c: dict[str, Any] | None) -> tuple[bool | None, str]:
    if c is None or c["improvement_ci"] is None:
        return None, "no confirmed improvement"
    itself = " (the baseline itself)" if c["is_baseline"] else ""
    return direction(*c["improvement_ci"]), f"{c['label']}{itself}: {ci(c['improvement'], *c['improvement_ci'])}"  # fmt: skip


def _resolve_verdicts(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Per arm: its confirmed winner beats the baseline in every run."""
    out = []
    for arm in ARMS:
        parts = [(k, *_improvement(s["confirmation"][k])) for k, t in s["table"].items() if t["arm"] == arm]  # fmt: skip
        out.append(verdict(
            f"The confirmed winner of {WHOSE[arm]} beats the baseline (constant ε-MSE) on the fresh seeds",
            every(h for _, h, _ in parts),
            "; ".join(f"{k}: {text}" for k, _, text in parts) + " (paired improvement in FID,"
            f" 95 % t); resolved in {s['arms_summary'][arm]['resolved']} runs"))  # fmt: skip
    return out


def _against_grid(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Per search arm: its confirmed winners beat the grid's, paired by confirmation seed."""
    conf, out = s["confirmation"], []
    grid = conf["grid"]
    for arm in SEEDED:
        holds, parts = [], []
        for k in (k for k, t in s["table"].items() if t["arm"] == arm):
            c = conf[k]
            if not (c and grid and c["seeds"] == grid["seeds"] and None not in c["values"] + grid["values"]):  # fmt: skip
                holds.append(None)
                parts.append(f"{k}: not comparable")
                continue
            h, text = paired(c["values"], grid["values"], "min")
            holds.append(h)
            parts.append(f"{k} ({c['label']}) {pm(*mean_std(c['values']))}: {text}")
        grid_text = "none" if grid is None else f"{grid['label']} {pm(*mean_std(grid['values']))}"
        out.append(verdict(
            f"The confirmed winner of {WHOSE[arm]} beats the grid's confirmed winner (paired by confirmation seed)",
            every(holds), f"grid {grid_text}; " + "; ".join(parts) + " (improvement in FID, 95 % t)"))  # fmt: skip
    return out


def cdl_split(runs: dict[str, Result], step: int) -> tuple[list[float], list[float]]:
    """FIDs at `step` of the debias_family trials without and with the contrastive term."""
    off, on = [], []
    for run in runs.values():
        for t in run["trial_results"] if run["arm"] in SEEDED else []:
            fid = next((r["fid"] for r in t["results"] if r["step"] == step), None)
            if fid is not None and math.isfinite(fid):
                (on if t["params"]["cdl.coef"] > 0 else off).append(fid)
    return off, on


def _cdl_verdicts(runs: dict[str, Result], std: float | None) -> list[dict[str, Any]]:
    searched = [r for r in runs.values() if r["arm"] in SEEDED]
    steps = sorted({x["step"] for r in searched for t in r["trial_results"] for x in t["results"]})
    worse, parts = [], []
    for step in steps:
        off, on = cdl_split(runs, step)
        if off and on:
            worse.append(min(on) > max(off))
            parts.append(f"step {step}: {min(on):.2f}–{max(on):.2f} against {min(off):.2f}–{max(off):.2f}")  # fmt: skip
    cdl = [t for r in searched if r["arm"] == "tpe_asha" for t in r["trial_results"] if t["params"]["cdl.coef"] > 0]  # fmt: skip
    stopped = sum(t["results"][-1]["step"] == steps[0] for t in cdl) if steps else 0
    off, _ = cdl_split(runs, steps[-1]) if steps else ([], [])
    span = max(off) - min(off) if len(off) > 1 else None
    return [
        verdict(
            "Every trial with the contrastive term (cdl.coef ≥ 0.1) has a worse FID than every "
            "trial without it, at every step both reached",
            all(worse) if worse else None,
            "; ".join(parts or ["no step with trials of both"]) + f"; ASHA stopped {stopped} of "
            f"the {len(cdl)} such TPE + ASHA trials at step {steps[0] if steps else '—'}",
        ),
        verdict(
            f"Trials without the contrastive term that ran all {steps[-1] if steps else '—'} "
            "steps end within one seed std of the FID of each other",
            None if span is None or std is None else span < std,
            f"{len(off)} trials, final FID {_f(min(off, default=None), '.2f')}–"
            f"{_f(max(off, default=None), '.2f')} (a span of {_f(span, '.2f')}); seed std "
            f"{_f(std, '.2f')} (pooled over the confirmed configurations)",
        ),
    ]


def verdicts_of(runs: dict[str, Result], s: dict[str, Any]) -> list[dict[str, Any]]:
    ref, noise, table = s["reference"], s["noise"], s["table"]
    std = noise["seed_std_pooled"]
    searches = [t for t in table.values() if t["arm"] in SEEDED]
    grid = table["grid"]
    return [
        _target_verdict(s),
        *_resolve_verdicts(s),
        *_against_grid(s),
        verdict(
            f"The {100 * BAND:g} % band is narrower than the noise of the metric itself (the std "
            "of a configuration's final FID over fresh training seeds)",
            None if std is None else not noise["band_exceeds_noise_std"],
            f"band {noise['band_width']:.3f} FID (5 % of {ref['fid']:.3f}, the {ref['run']} "
            f"winner's); seed std {_f(std, '.2f')} (pooled over {noise['configurations']} "
            "confirmed configurations)",
        ),
        *_cdl_verdicts(runs, std),
        verdict(
            f"A {searches[0]['trials']}-trial search spends more training steps than the whole "
            f"{grid['trials']}-point grid (search stage)",
            all(t["total_steps"] > grid["total_steps"] for t in searches),
            f"searches {min(t['total_steps'] for t in searches)}–"
            f"{max(t['total_steps'] for t in searches)} steps; the grid {grid['total_steps']}",
        ),
    ]


# -- plot -----------------------------------------------------------------------------------------
def plot(result: Result, path: Path) -> None:
    """Best-so-far FID against compute, one line per run; and each run's confirmed winner against
    the baseline on the fresh seeds (a line joins a seed's pair; bars: 95 % t intervals)."""
    plt, s = harness.pyplot(), result["summary"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [1.6, 1]})
    ref, seen, lows = s["reference"], set(), []
    for key, run in result["raw"]["runs"].items():
        arm, c = run["arm"], curve(run)
        lows += [b for b in c["best"] if math.isfinite(b)]
        ax0.step(c["steps"], c["best"], where="post", color=COLORS[arm], lw=1.3, label=None if arm in seen else LABELS[arm])  # fmt: skip
        seen.add(arm)
        hit = s["table"][key]["to_5pct_of_best"]
        if hit["reached"]:
            ax0.plot([hit["steps"]], [c["best"][c["steps"].index(hit["steps"])]], "o", color=COLORS[arm], ms=4)  # fmt: skip
    ax0.axhline(ref["fid"], color="k", lw=0.8, ls=":", label=f"best confirmed {ref['fid']:.3f}")
    ax0.axhline(ref["threshold"], color="k", lw=1, ls="--", label="within 5 % of it")
    band = ref["threshold"] - ref["fid"]
    ax0.set_ylim(min(min(lows), ref["fid"]) - band, max(min(max(lows), 2 * ref["fid"]), ref["fid"] + 4 * band))  # fmt: skip
    ax0.set(xlabel="cumulative training steps over all trials (search stage)", ylabel=f"best-so-far {METRIC} during the search",
            title="best FID found vs compute (one line per search run; dot: within 5 %)")  # fmt: skip
    ax0.legend(fontsize=8)
    for y, (key, c) in enumerate(s["confirmation"].items()):
        for b, w in zip(c["baseline"]["values"], c["values"], strict=True) if c else []:
            ax1.plot([b, w], [y + 0.15, y - 0.15], color="0.75", lw=0.8, zorder=1)
        for entry, dy, col in ((c["baseline"], 0.15, "0.4"), (c, -0.15, COLORS[s["table"][key]["arm"]])) if c else []:  # fmt: skip
            ax1.scatter(entry["values"], [y + dy] * len(entry["values"]), color=col, s=14, zorder=3)
            if entry["ci"] is not None and all(map(math.isfinite, entry["ci"])):
                xerr = [[entry["mean"] - entry["ci"][0]], [entry["ci"][1] - entry["mean"]]]
                ax1.errorbar(entry["mean"], y + dy, xerr=xerr, fmt="|", color=col, ms=10, capsize=2, lw=0.8, zorder=2)  # fmt: skip
    names = [f"{key}: {c['label'] if c else 'no winner'}" for key, c in s["confirmation"].items()]
    ax1.set_yticks(range(len(names)), names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set(xlabel=f"final {METRIC} per fresh seed (grey: the baseline)",
            title="confirmation: each run's winner against the baseline")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------
def arm_of(arm: str, runs: dict[str, Result], args: argparse.Namespace) -> dict[str, Any]:
    """An arm's command (S: the search seed), seeds, plan and searched parameters."""
    first = next(r for r in runs.values() if r["arm"] == arm)
    seed, smoke = " --seed S" if arm in SEEDED else "", " --smoke-test" if args.smoke else ""
    return {"command": f"python -m tuner.run {' '.join(ARMS[arm])}{seed}{smoke}",
            "seeds": args.seeds if arm in SEEDED else None, "plan": first["plan"], "params": first["params"]}  # fmt: skip


def main() -> int:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2], cache=True)
    parser.add_argument("--default-results", type=Path,
                        help="bench/search_default.py's results, whose runs of the tpe_asha command are reused "
                        "(default: its results file, or its smoke file with --smoke)")  # fmt: skip
    args = parser.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    if args.smoke:
        args.seeds = args.seeds[:1]
    if args.default_results is None:
        of_default = argparse.Namespace(name=search_default.NAME, out=None, smoke=args.smoke)
        args.default_results = harness.out_path(of_default)
    load_before, t_start = os.getloadavg(), time.perf_counter()
    runs = collect(args)
    raw = {
        "env": {"cwd": "a fresh scratch folder per run (its own ./ray_results and ./mlruns)"},
        "runs": runs,
        "wall_s_this_invocation": round(time.perf_counter() - t_start, 1),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "wall times on a shared 2-core machine; compute is counted in training steps",
    }
    arms = {arm: arm_of(arm, runs, args) for arm in ARMS}
    harness.finish(args, harness.new(args, arms, raw), summarise, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
