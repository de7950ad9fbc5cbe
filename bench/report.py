"""Render docs/results.md from the benchmark results in bench/results/*.json.

Every number on the page comes from a results file that a script in bench/ wrote (the command
that made it is printed beside each table), and every claim is one of the verdicts that script
computed from its measurements through tuner/stats.py ({"claim", "holds", "evidence"}); this
script only fills templates. Anything else it says is a note with its date, marked as such.
`tests/test_results_page.py` checks that the committed page is what this renders.

    .venv/bin/python bench/report.py            # rewrites docs/results.md
    .venv/bin/python bench/report.py --check    # exit 1 if docs/results.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS, ROOT, ci, pm, verdict_word  # noqa: E402

PAGE = ROOT / "docs" / "results.md"
Results = dict[str, dict[str, Any]]
# A key the current version of a script writes: a file without it is to be re-measured.
CURRENT = {"search_compare": "runs", "search_default": "runs"}


def pending(name: str, d: dict[str, Any]) -> bool:
    return name in CURRENT and CURRENT[name] not in d


def ms(entry: dict[str, float], key: str, digits: int = 3) -> str:
    """mean ± std of a summary entry holding key and key_std ("—" where it has none)."""
    return pm(entry[key], entry[key + "_std"], digits) if key in entry else "—"


def sd(v: dict[str, float], digits: int = 3) -> str:
    """mean ± std of a {"mean", "std"} entry."""
    return pm(v["mean"], v["std"], digits)


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def figure(name: str, caption: str) -> str:
    return (
        f"![{caption}](../bench/results/{name}.png)" if (RESULTS / f"{name}.png").exists() else ""
    )


def evidence(e: Any) -> str:
    if isinstance(e, dict):
        return "; ".join(f"{k}: {v}" for k, v in e.items())
    return "; ".join(map(str, e)) if isinstance(e, list) else str(e)


def verdicts(name: str, script: str, d: dict[str, Any]) -> list[str]:
    """The verdicts and dated notes of a results file."""
    notes = [f"*Note ({n['date']}): {n['text']}*" for n in d.get("notes", [])]
    if "verdicts" not in d:
        return [f"*No verdicts in `bench/results/{name}.json` yet: `.venv/bin/python bench/"
                f"{script} --resummarise` computes them from its raw data.*"] + notes  # fmt: skip
    lines = [f"- **{verdict_word(v['holds'])}** — {v['claim'].rstrip('.')}. *{evidence(v['evidence'])}*"
             for v in d["verdicts"]]  # fmt: skip
    head = f"**Verdicts** (computed by `bench/{script}` from these results):\n\n"
    return ([head + "\n".join(lines)] if lines else []) + notes


# -- sections: the description, tables and figure of each results file -------------------------
def weighting_ring(d: dict[str, Any]) -> list[str]:
    s, bins, floor, steps = d["summary"], d["bins"], d["exact_samples_floor"], d["sampler_steps"]
    centres = [f"{(a + b) / 2:g}" for a, b in zip(bins[:-1], bins[1:], strict=True)]
    pick = [0, 2, 4, 6]
    head = ["weighting"] + [f"x0 err λ≈{centres[i]}" for i in pick]
    head += [f"DDIM-{k} SWD" for k in steps] + ["DDIM-50 NLL", "DDIM-50 mode err"]
    rows = [
        [arm] + [sd(v[f"x0_err/bin{i}"], 2) for i in pick] + [sd(v[f"ddim{k}/eval/swd"]) for k in steps]
        + [sd(v["ddim50/eval/nll"]), sd(v["ddim50/eval/mode_error"], 2)]
        for arm, v in s.items()
    ]  # fmt: skip
    rows.append(["exact samples"] + [""] * len(pick) + [sd(floor["eval/swd"])] + [""] * (len(steps) - 1)
                + [sd(floor["eval/nll"]), sd(floor["eval/mode_error"], 2)])  # fmt: skip
    return [
        f"`{d['command']}` — ring8, {d['config']['train.steps']} steps of batch "
        f"{d['config']['train.batch']}, the same MLP for every arm, seeds {d['seeds']}; x0 error "
        "‖x̂0 − E[x0|x]‖² against the exact posterior mean per λ bin; DDIM samples scored by "
        "sliced Wasserstein distance (SWD), NLL under the true mixture and mode-fraction error.",
        table(head, rows),
        figure("weighting_ring", "weighting on ring8"),
    ]


def weighting_digits(d: dict[str, Any]) -> list[str]:
    s, steps, floor = d["summary"], d["sampler_steps"], d["real_data_floor"]
    head = ["weighting"] + [f"FID, DDIM-{k}" for k in steps]
    head.append(f"class-proportion err, DDIM-{steps[-1]}")
    rows = [[arm] + [sd(v[f"ddim{k}/eval/fid"]) for k in steps] + [sd(v[f"ddim{steps[-1]}/eval/mode_error"], 2)]
            for arm, v in s.items()]  # fmt: skip
    rows.append([f"real train digits (N = {floor['n']})"] + [f"{floor['eval/fid']:.3g}"] * len(steps)
                + [f"{floor['eval/mode_error']:.2g}"])  # fmt: skip
    return [
        f"`{d['command']}` — digits, {d['config']['train.steps']} steps of batch "
        f"{d['config']['train.batch']}, the same UNet for every arm, seeds {d['seeds']}; FID by "
        f"the digits CNN on {d['config']['eval.samples']} samples against the test split.",
        table(head, rows),
        figure("weighting_digits", "weighting on digits"),
    ]


def tiw_bimodal(d: dict[str, Any]) -> list[str]:
    s, c = d["summary"], d["config"]
    disc = s["discriminator"]
    head = ["arm", "minority fraction (target 0.5)", "NLL under the truth", "MMD", "SWD"]
    rows = [[arm, ms(v, "eval/minority_fraction"), ms(v, "eval/nll"), ms(v, "eval/mmd", 2), ms(v, "eval/swd")]
            for arm, v in s.items() if arm != "discriminator"]  # fmt: skip
    full = "TIW full (a=1)"
    per = sorted(d["per_seed"], key=lambda r: r["discriminator"]["ratio/logr_rmse"])
    shares = [r[full]["eval/minority_fraction"] for r in per]
    rmse = [r["discriminator"]["ratio/logr_rmse"] for r in per]
    return [
        f"`{d['command']}` — bimodal_biased (observed 0.9/0.1, reference 0.5/0.5 of 5 % the "
        f"size), {c['train.steps']} steps of batch {c['train.batch']}, {d['seeds']} seeds, one "
        f"discriminator per seed ({c['tiw.disc_steps']} steps at most, early-stopped after "
        f"{ms(disc, 'ratio/steps')}) shared by the arms. The discriminator against the exact "
        f"time-dependent ratio: RMSE of log r {ms(disc, 'ratio/logr_rmse', 2)} (the exact log r "
        f"has a spread of {disc['ratio/logr_std']:.2g}); RMSE of the ε-target correction "
        f"σ∇ₓlog r {ms(disc, 'ratio/corr_rmse', 2)} (its exact RMS {disc['ratio/corr_norm']:.2g}).",
        table(head, rows),
        figure("tiw_bimodal", "TIW on bimodal_biased"),
        f"Per seed, {full} reaches minority fractions {', '.join(f'{x:.2f}' for x in shares)} "
        f"with discriminators of log-ratio RMSE {', '.join(f'{x:.3f}' for x in rmse)}.",
    ]  # fmt: skip


def tiw_digits(d: dict[str, Any]) -> list[str]:
    s, real, unb, disc, c = (
        d["summary"],
        d["real_data"],
        d["unbiased"],
        d["discriminator"],
        d["config"],
    )
    keys = ("eval/minority_fraction", "eval/mode_error", "eval/fid", "eval/kid")
    head = ["arm", "minority share (classes 5–9)", "class-proportion TV error", "FID", "KID"]
    rows = [[arm] + [sd(v[k]) for k in keys] for arm, v in s.items()]
    rows += [[f"real: {name} (N = {v['n']['mean']:.0f})"] + [sd(v[k]) for k in keys] for name, v in real.items()]  # fmt: skip
    return [
        f"`{d['command'].strip()}` — digits_biased (all train images of classes 0–4, 20 % of "
        f"classes 5–9; a class-uniform reference set), {c['train.steps']} steps of batch "
        f"{c['train.batch']}, seeds {d['seeds']}, one discriminator per seed shared by the arms "
        f"(early-stopped after {sd(disc['ratio/steps'], 2)} steps). Samples ({c['eval.samples']}, "
        "DDIM-50) are classified by the digits CNN; the test split's CNN minority share is "
        f"{unb['cnn_minority_fraction']:.3f} (true labels {unb['true_minority_fraction']:.3f}). "
        f"The discriminator at λ = 8, where the target is the class ratio: log r of majority "
        f"images {sd(disc['ratio/logr_majority@8'], 2)} (exact "
        f"{disc['ratio/exact_clean_logr_majority']['mean']:.2f}), of minority images "
        f"{sd(disc['ratio/logr_minority@8'], 2)} (exact "
        f"{disc['ratio/exact_clean_logr_minority']['mean']:.2f}); E_obs[r] over q(λ) "
        f"{sd(disc['ratio/mean_r@q'], 2)} (exact 1).",
        table(head, rows),
        figure("tiw_digits", "TIW on digits_biased"),
    ]  # fmt: skip


def ambient_gaussian(d: dict[str, Any]) -> list[str]:
    head = ["arm", "variance, dim 0", "variance, dim 1", "rel. error to the clean covariance"]
    rows = [[arm, ms(v, "var_x"), ms(v, "var_y"), ms(v, "rel_err_clean", 2)] for arm, v in d["summary"].items()]  # fmt: skip
    rows += [[f"closed form: {k}", f"{v[0]:.3g}", f"{v[1]:.3g}", ""] for k, v in d.get("closed_form", {}).items()]  # fmt: skip
    c = d["config"]
    return [
        f"`{d.get('command', '.venv/bin/python bench/ambient_gaussian.py')}` — gaussian_noisy "
        f"(x0 ~ N(0, diag(1, 0.25)) seen only as y = x0 + 0.5·η), {c['train.steps']} steps of "
        f"batch {c['train.batch']}, {len(d['per_seed'])} seeds, {c['eval.samples']} samples.",
        table(head, rows),
        figure("ambient_gaussian", "ambient on gaussian_noisy"),
    ]


def cdl_mismatch(d: dict[str, Any]) -> list[str]:
    head = ["arm", "steps", "ε err, mismatched", "ε err, matched", "Picard sweeps (50 steps)"]
    head += ["DDIM-5 NLL", "DDIM-10 NLL", "DDIM-5 MMD"]
    c = d["config"]
    rows = [[arm, f"{v['steps']:.0f}" if "steps" in v else str(c["train.steps"]), ms(v, "eps_err/mismatched", 2),
             ms(v, "eps_err/matched", 2), ms(v, "picard/iterations"), ms(v, "ddim5/nll"), ms(v, "ddim10/nll"),
             ms(v, "ddim5/mmd", 2)] for arm, v in d["summary"].items()]  # fmt: skip
    return [
        f"`{d.get('command', '.venv/bin/python bench/cdl_mismatch.py')}` — ring8, "
        f"{c['train.steps']} steps of batch {c['train.batch']}, {len(d['per_seed'])} seeds; "
        "ε̂ error against the exact ε* at the mismatched (input, level) pairs CDL trains on "
        "and at matched ones; Picard sweeps to converge on a 50-step grid; few-step DDIM.",
        table(head, rows),
        figure("cdl_mismatch", "CDL on ring8"),
    ]


def performance(results: Results) -> list[str]:
    """The verdicts of the cost and overhead files, in one table."""
    names = {"objectives_cost": "objectives", "ray_overhead": "Ray", "eval_cost": "evaluation", "search_default": "default search"}  # fmt: skip
    rows = [[what, v["claim"], verdict_word(v["holds"]), evidence(v["evidence"])] for name, what in names.items()
            if not pending(name, results.get(name, {})) for v in results.get(name, {}).get("verdicts", [])]  # fmt: skip
    return ["Gathered from the sections below (the same files and verdicts).",
            table(["", "claim", "verdict", "evidence"], rows) if rows else ""]  # fmt: skip


def objectives_cost(d: dict[str, Any]) -> list[str]:
    meta, nets = d["meta"], [n for n in ("mlp", "unet") if n in d]
    head = ["objective", "target"] + [
        f"{n.upper() if n == 'mlp' else 'UNet'} ({meta[n]})" for n in nets
    ]
    rows = [[n, f"≤ {d[nets[0]][n]['target']:g}×"]
            + [f"{d[net][n]['ratio']:.2f}× [{d[net][n]['ratio_min']:.2f}, {d[net][n]['ratio_max']:.2f}]" for net in nets]
            for n in d[nets[0]] if n != "plain"]  # fmt: skip
    plain = ", ".join(
        f"{d[n]['plain']['step_ms']:.1f} ms {'MLP' if n == 'mlp' else 'UNet'}" for n in nets
    )
    return [
        "`.venv/bin/python bench/objectives_cost.py` — one step (objective, backward, AdamW) in "
        f"process CPU time on {meta['threads']} thread, median of {meta['rounds']} interleaved "
        f"rounds of {meta['steps_per_round']} steps, over the plain ε-MSE step on the same net "
        f"and batch (plain: {plain}); brackets: the spread of the per-round ratios. "
        "consistency_kK has K chain steps; cdl_m2 uses 2 Monte-Carlo points.",
        table(head, rows),
        figure("objectives_cost", "per-step cost"),
    ]  # fmt: skip


def iv(mean: float | None, interval: list[float] | None) -> str:
    return "—" if mean is None or interval is None else ci(mean, *interval)  # mean [95 % interval]


def spread(s: dict[str, Any], spec: str) -> str:
    """mean ± std of the runs that reached (one run: its value; none: —)."""
    if not s["n"]:
        return "—"
    return spec.format(s["mean"]) + (f" ± {spec.format(s['std'])}" if s["n"] > 1 else " (1 run)")


def against_grid(a: dict[str, Any]) -> str:
    if a["mean_vs_grid_as_run"] is not None:
        return f"{a['mean_vs_grid_as_run']:.2f}×"
    return "—" if a["mean_steps"] is None else f"{a['mean_steps']:.0f} steps"


def search_compare(d: dict[str, Any]) -> list[str]:
    def fids(values: list[float | None]) -> str:
        return " ".join("—" if v is None else f"{v:.3f}" for v in values)

    ref, arms, conf, orders = d["reference"], d["arms"], d["confirmation"], d["grid_all_orders"]
    rows = [[k, f"{r['best_search_fid']:.3f}", f"{r['to_5pct_of_best']['steps']} ({r['to_5pct_of_best']['trial_s']:.0f} s)" if r["to_5pct_of_best"]["reached"] else "never",
             f"{r['total_steps']} ({r['total_trial_s']:.0f} s)", f"{r['stopped_early']}/{r['trials']}"] for k, r in d["table"].items()]  # fmt: skip
    won = [[k, c["label"], fids(c["values"]), iv(c["mean"], c["ci"]), fids(c["baseline"]["values"]), iv(c["improvement"], c["improvement_ci"]),
            "yes" if c["resolved"] else "no"] for k, c in conf.items() if c]  # fmt: skip
    per_arm = [[arm, s["reached"], spread(s["steps"], "{:.0f}"), spread(s["trial_s"], "{:.0f} s"), s["resolved"]] for arm, s in d["arms_summary"].items()]  # fmt: skip
    bands = [[f"{100 * float(band):.0f} %", f"{b['threshold']:.3f}", "never" if b["grid_as_run"] is None else str(b["grid_as_run"])] + [f"{b[a]['reached']}, " + against_grid(b[a]) for a in ("tpe_asha", "random")]
             for band, b in d["band_sensitivity"].items()]  # fmt: skip
    at = {arm: f"`{a['command']}` ({a['plan']['trials']} trials{', search seeds ' + ', '.join(map(str, a['seeds'])) if a['seeds'] else ''}; "
          f"evaluated at steps {', '.join(map(str, a['plan']['eval_steps']))})" for arm, a in arms.items()}  # fmt: skip
    reused = f" The runs {', '.join(d['reused'])} are `bench/search_default.py`'s, reused." if d["reused"] else ""  # fmt: skip
    return [
        f"`{d['command']}` — {len(arms)} searches, each in a scratch folder of its own, on the default task (digits_biased, {arms['grid']['plan']['max_steps']} steps per trial), "
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
        figure("search_compare", "search compute to reach the best confirmed FID, and the confirmed winners"),
    ]  # fmt: skip


def search_default(d: dict[str, Any]) -> list[str]:
    won = [(r["verdict"] or {}).get("winner") or {} for r in d["runs"]]
    rows = [[str(r["seed"]), f"{r['wall_s']:.0f}", str(r["trials"]), str(r["stopped_by_asha"]), str(r["failed"]), f"{r['peak_pss_gib']:.2f}", f"{r['peak_rss_gib']:.2f}",
             str(r["resolved"]).lower(), iv(w.get("improvement"), w.get("improvement_ci"))] for r, w in zip(d["runs"], won, strict=True)]  # fmt: skip
    return [
        f"`.venv/bin/python bench/search_default.py` runs `{d['command'].strip()}` once per search seed S ({', '.join(map(str, d['seeds']))}), each in a fresh "
        f"folder, on {d['cpus']} cores: wall time with the confirmation stage, peak memory summed over the driver, Ray and the workers (PSS: shared pages "
        "counted once; RSS for reference), and the confirmed winner's paired improvement in FID over the baseline on the fresh seeds (95 % t interval).",
        table(["seed", "wall s", "trials", "stopped by ASHA", "failed", "peak PSS GiB", "peak RSS GiB", "resolved", "improvement [95 %]"], rows),
    ]  # fmt: skip


def default_budget(d: dict[str, Any]) -> list[str]:
    rows = [[arm, *(sd(d["summary"][arm][k]) for k in ("eval/fid", "eval/minority_fraction"))] for arm in d["arms"]]  # fmt: skip
    return [f"`{d['command']}` trains the default search's trial configuration (its baseline: constant ε-MSE, no CDL) with and without TIW-DSM "
            f"on seeds {', '.join(map(str, d['seeds']))}; final metrics at step {d['config']['train.steps']}:",
            table(["arm", "eval/fid", "eval/minority_fraction"], rows)]  # fmt: skip


def ring8_default(d: dict[str, Any]) -> list[str]:
    s, fl = d["summary"], d["floor_exact_samples"]
    rows = [[str(r["seed"]), " ".join(f"{f:.3f}" for f in r["mode_fractions"]), f"{r['max_abs_dev']:.3f}",
             f"{r['tv_to_uniform']:.3f}", f"{r['eval/nll']:.2f}", f"{r['wall_s']:.0f}"] for r in d["per_seed"]]  # fmt: skip
    rows.append([f"{fl['draws']} exact draws of {fl['n']}", "", f"{fl['max_dev_mean']:.3f} (95th pct {fl['max_dev_p95']:.3f})",
                 f"{fl['tv_mean']:.3f} (95th pct {fl['tv_p95']:.3f})", f"{fl['nll_mean']:.2f}", ""])  # fmt: skip
    return [
        f"`{d['command']}` runs the README command `{d['readme_command']}` per seed: "
        f"max |fraction − 1/8| {sd(s['max_abs_dev'])}, wall time {sd(s['wall_s'])} s.",
        table(["seed", "mode fractions", "max abs dev", "TV to uniform", "NLL", "wall s"], rows),
        figure("ring8_default", "ring8 mode fractions"),
    ]


def ray_overhead(d: dict[str, Any]) -> list[str]:
    c, sec = d["concurrency"], d["seconds"]
    rows = [
        ["trainable loop under Ray + MLflow / bare run_trial", f"{d['loop_overhead_ratio']:.3f}", "≤ 1.05"],
        ["trial's MLflow run span / bare process", f"{d['trial_overhead_ratio']:.3f}", ""],
        ["whole search command (Ray start, MLflow) / bare process", f"{d['command_ratio']:.3f}", ""],
        [f"throughput, {c['trials']} trials 2 at a time / 1 at a time", f"{c['throughput_ratio']:.3f}", "≥ 1.8"],
        ["the same on plain worker processes, by run_trial time (the cores' ceiling)", f"{c['machine_ceiling_ratio']:.3f}", ""],
        ["the same on plain worker processes, by wall time (start-ups overlap)", f"{c['machine_wall_ceiling_ratio']:.3f}", ""],
        ["Ray's throughput ratio / the cores' ceiling", f"{c['ray_share_of_ceiling']:.3f}", ""],
        ["a Ray trial's time, 2 at a time / alone (means)", f"{c['ray_trial_slowdown_2_at_a_time']:.3f}", ""],
        ["a plain run_trial's time, 2 at a time / alone (means)", f"{c['plain_loop_slowdown_2_at_a_time']:.3f}", ""],
    ]  # fmt: skip
    return [
        f"`.venv/bin/python bench/ray_overhead.py` — one debias_family point "
        f"({d['config']['train.steps']} steps, TIW and CDL off) as a bare `run_trial` and as a "
        f"one-trial search, each ratio taken within one repeat and the median shown; seconds "
        f"per repeat: bare loop {sec['bare_loop']}, Ray loop {sec['ray_loop']}, search "
        f"command {sec['ray_command']}. Concurrency: {c['trials']} trials of {c['train.steps']} "
        "steps, 1 CPU each, on Ray's reused trial workers and on plain worker processes (one, "
        f"then two), each ratio taken within one of {c['repeats']} repeats and the median "
        f"shown; per repeat, Ray {c['throughput_ratio_per_repeat']}, plain workers "
        f"{c['machine_ceiling_ratio_per_repeat']} (load average before: "
        f"{d['loadavg_before'][0]:.2f}).",
        table(["ratio", "measured", "target"], rows),
    ]


def throughput(d: dict[str, Any]) -> list[str]:
    peak = d["peak_gflops"]
    rows = [[name, t, f"{r['gflop_per_step']:.3f}", f"{r['step_ms']:.1f}", f"{r['gflops']:.1f}", f"{100 * r['fraction_of_peak']:.1f} %"]
            for name, by_threads in d["steps"].items() for t, r in by_threads.items()]  # fmt: skip
    return [
        f"`{d['command']}` — float32 matmul peak {peak['1']['best']:.0f} GFLOP/s on 1 thread, "
        f"{peak['2']['best']:.0f} GFLOP/s on 2; a training step's matmul and convolution FLOPs "
        "(forward and backward, counted by torch's FlopCounterMode) over its median time.",
        table(["configuration", "threads", "GFLOP/step", "ms/step", "GFLOP/s", "of peak"], rows),
    ]


def eval_cost(d: dict[str, Any]) -> list[str]:
    rows = [[str(r["n"]), f"{r['fid_kid_cold_cache_s']:.1f}", f"{r['fid_kid_s']:.1f}", f"{r['fid_only_s']:.1f}", f"{r['grid_png_s']:.2f}"]
            for r in d["digits"]]  # fmt: skip
    gen = [[r["config"], f"{r['sampler']} {r['steps']}", str(r["n"]), f"{r['sample_s']:.1f}"] for r in d.get("generation", [])]  # fmt: skip
    share = [[r["trial"], ", ".join(map(str, r["steps"])), f"{r['total_s']:.0f}", f"{r['eval_s']:.1f}", f"{100 * r['share']:.1f} %"]
             for r in d.get("share", [])]  # fmt: skip
    i = d.get("inception")
    return [
        "`.venv/bin/python bench/eval_cost.py` — seconds for the metrics of N digits samples "
        f"against the {d['digits_reference']}-image test split (digits CNN):",
        table(["N", "FID+KID, cold cache", "FID+KID", "FID only", "sample grid PNG"], rows),
        table(["configuration", "sampler", "N", "sampling s"], gen) if gen else "",
        table(["trial", "evaluated at steps", "wall s", "evaluation s", "share (target ≤ 20 %)"], share) if share else "",
        f"Inception (random weights of the real shapes): FID+KID of {i['n']} against "
        f"{i['n_reference']} images takes {i['fid_kid_s']:.0f} s on this CPU." if i else "",
    ]  # fmt: skip


def fid_small_n(d: dict[str, Any]) -> list[str]:
    parts = [
        f"`.venv/bin/python bench/fid_small_n.py` — FID of {d['repeats']} random N-subsets "
        f"against the {d['reference']}; large N extrapolated by FID_N = FID_inf + b/N "
        "(rows beyond the 1347 train digits are bootstrap resamples)."
    ]
    for name, v in d["sets"].items():
        rows = [[n, pm(r["mean"], r["std"]), f"{r['gap_to_fid_inf']:.3f}"] for n, r in v["by_n"].items()]  # fmt: skip
        parts += [f"**{name}** (FID_inf {v['fid_inf']:.3f}):", table(["N", "FID", "gap to FID_inf"], rows)]  # fmt: skip
    return parts


def digits_classifier(d: dict[str, Any]) -> list[str]:
    return [
        f"`.venv/bin/python bench/train_digits_classifier.py` — the digits CNN behind digits FID "
        f"({d['params']} parameters, {d['epochs']} epochs on the {d['n_train']} training digits, "
        f"{d['train_seconds']:.0f} s): test accuracy {100 * d['test_accuracy']:.1f} % on "
        f"{d['n_test']} test digits; weights `{d['weights']}`."
    ]


Section = Callable[[dict[str, Any]], list[str]]
SECTIONS: list[tuple[str, str, str, Section | None]] = [
    ("Weighting on the ring of Gaussians", "weighting_ring", "weighting_ring.py", weighting_ring),
    ("Weighting on digits", "weighting_digits", "weighting_digits.py", weighting_digits),
    ("TIW-DSM on the biased mixture", "tiw_bimodal", "tiw_bimodal.py", tiw_bimodal),
    ("TIW-DSM on biased digits", "tiw_digits", "tiw_digits.py", tiw_digits),
    ("Ambient Tweedie and consistency on noisy Gaussian data", "ambient_gaussian", "ambient_gaussian.py", ambient_gaussian),
    ("Contrastive diffusion loss on the ring", "cdl_mismatch", "cdl_mismatch.py", cdl_mismatch),
    ("Performance at a glance", "", "", None),
    ("Cost of each objective per step", "objectives_cost", "objectives_cost.py", objectives_cost),
    ("The search: TPE + ASHA against random search and the grid of published points", "search_compare", "search_compare.py", search_compare),
    ("The default search", "search_default", "search_default.py", search_default),
    ("The default search's budget: TIW-DSM against plain denoising", "default_budget", "default_budget.py", default_budget),
    ("One trial: the README's ring8 command", "ring8_default", "ring8_default.py", ring8_default),
    ("Ray Tune and MLflow overhead, and concurrency", "ray_overhead", "ray_overhead.py", ray_overhead),
    ("Training throughput against the CPU's peak", "throughput", "throughput.py", throughput),
    ("Evaluation cost", "eval_cost", "eval_cost.py", eval_cost),
    ("How far small-N FID is from large-N FID", "fid_small_n", "fid_small_n.py", fid_small_n),
    ("The digits feature extractor", "digits_classifier", "train_digits_classifier.py", digits_classifier),
]  # fmt: skip


def machines(results: Results) -> str:
    """What the results files say of the machine that ran them."""
    cores: dict[int, list[str]] = {}
    for name, d in results.items():
        n = d.get("cpus", d.get("machine", {}).get("cpu_count"))
        if n is not None:
            cores.setdefault(n, []).append(f"`{name}`")
    return "; ".join(f"{n} CPU cores in {', '.join(names)}" for n, names in sorted(cores.items()))


def render(results: Results | None = None) -> str:
    if results is None:
        results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    parts = [
        "# Results",
        "Small-scale reproductions and benchmarks. Every number below is read from "
        "`bench/results/*.json`, written by the command shown with it; this page is rendered "
        "from those files by `.venv/bin/python bench/report.py` (a test checks it is current). "
        "Spreads are the standard deviation over seeds. Each claim is a verdict its script "
        "computed (through `tuner/stats.py`) from its measurements: **holds**, **does not hold**, "
        "or **not resolved** where its 95 % interval (Student-t over seeds unless said) still "
        "holds both answers. A note is written by hand and carries its date. The "
        f"files that record their machine say: {machines(results)}.",
    ]
    for title, name, script, fn in SECTIONS:
        if fn is None:
            body = performance(results)
        elif name not in results:
            body = [f"*Not measured yet: run `.venv/bin/python bench/{script}` to write "
                    f"`bench/results/{name}.json`.*"]  # fmt: skip
        elif pending(name, results[name]):
            body = [f"*Re-measurement pending: `bench/results/{name}.json` was written by an earlier version of `bench/{script}` "
                    f"(before the confirmation stage); `.venv/bin/python bench/{script}` measures it again.*"]  # fmt: skip
        else:
            body = fn(results[name]) + verdicts(name, script, results[name])
        parts += [f"## {title}", "\n\n".join(p for p in body if p)]
    return "\n\n".join(p for p in parts if p) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args()
    page = render()
    if args.check:
        if (PAGE.read_text() if PAGE.exists() else "") != page:
            print(f"{PAGE} is stale: run .venv/bin/python bench/report.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
