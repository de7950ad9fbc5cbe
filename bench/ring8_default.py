"""The README command on ring8, per seed: how close to uniform are the samples' mode fractions?

Runs exactly `python -m tuner.train --set data=ring8 --set weighting=debiased` (default budget)
per seed as a subprocess, and scores its samples under the true ring: the eight fractions, max
|fraction − 1/8|, the total variation to uniform, eval/nll and the command's wall time. The floor
is the sampling noise of a perfect model: the same statistics of as many points drawn from the
truth, over many draws (mean and 95th percentile). Each seed's numbers are cached.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from claims import exceeds, sd, spread, table, verdict
from harness import Args, Result

from tuner.data.presets import load_dataset

NAME = "ring8_default"
TITLE = "One trial: the README's ring8 command"
README_ARGS = ["--set", "data=ring8", "--set", "weighting=debiased"]
FLOOR_DRAWS = 2000


def tv_and_max(fractions: np.ndarray) -> tuple[float, float]:
    """Total variation to uniform and max |fraction − 1/K|."""
    dev = np.abs(fractions - 1.0 / len(fractions))
    return 0.5 * float(dev.sum()), float(dev.max())


def floor(n: int, draws: int = FLOOR_DRAWS) -> dict[str, float]:
    """Sampling noise of a perfect model: TV and max deviation of n points from the truth."""
    truth, g, tvs, maxes, nlls = load_dataset("ring8").truth, torch.Generator().manual_seed(1234), [], [], []  # fmt: skip
    for _ in range(draws):
        x = truth.sample(n, g)
        tv, mx = tv_and_max(truth.mode_fractions(x).numpy())
        tvs, maxes, nlls = tvs + [tv], maxes + [mx], nlls + [float(-truth.log_prob(x).double().mean())]  # fmt: skip
    return {"n": n, "draws": draws, "tv_mean": float(np.mean(tvs)), "tv_p95": float(np.percentile(tvs, 95)),
            "max_dev_mean": float(np.mean(maxes)), "max_dev_p95": float(np.percentile(maxes, 95)),
            "nll_mean": float(np.mean(nlls)), "nll_std": float(np.std(nlls))}  # fmt: skip


def run_seed(seed: int, extra: list[str]) -> dict[str, Any]:
    """The README command for one seed, in a subprocess; its samples scored under the truth."""
    args = ["-m", "tuner.train", *README_ARGS, *extra, *(["--set", f"seed={seed}"] if seed else [])]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with tempfile.TemporaryDirectory(prefix="ring8_default_") as tmp:
        cmd, out = [sys.executable, *args, "--out", f"{tmp}/seed{seed}", "--quiet"], Path(f"{tmp}/seed{seed}")  # fmt: skip
        wall = harness.seconds(lambda: subprocess.run(cmd, cwd=harness.ROOT, env=env, check=True, stdout=subprocess.DEVNULL))[0]  # fmt: skip
        samples, final = np.load(out / "samples.npy"), json.loads((out / "metrics.json").read_text())["final"]  # fmt: skip
    fractions = load_dataset("ring8").truth.mode_fractions(torch.from_numpy(samples)).numpy()
    tv, mx = tv_and_max(fractions)
    return {"seed": seed, "command": "python " + shlex.join(args) + " --out DIR --quiet", "wall_s": wall,
            "n_samples": int(len(samples)), "mode_fractions": [float(f) for f in fractions], "max_abs_dev": mx,
            "tv_to_uniform": tv, **{k: final[k] for k in ("eval/nll", "eval/mode_error", "eval/swd", "eval/mmd", "time/total_s")},
            "samples_head": samples[:2000].tolist()}  # fmt: skip


def plot(result: Result, path: Path, samples: list) -> None:
    """The first seed's samples, and every seed's mode fractions against the exact draws' band."""
    runs, band = result["raw"]["per_seed"], result["raw"]["floor_exact_samples"]["max_dev_p95"]
    with harness.figure(path, 1, 2, figsize=(10, 4)) as (_, (ax0, ax1)):
        ax0.scatter(*np.array(samples).T, s=1, alpha=0.5)
        ax0.set(aspect="equal", title=f"seed {runs[0]['seed']}: {len(samples)} samples")
        width = 0.8 / len(runs)
        for i, r in enumerate(runs):
            ax1.bar(np.arange(8) + (i - (len(runs) - 1) / 2) * width, r["mode_fractions"], width=width, label=f"seed {r['seed']}")  # fmt: skip
        ax1.axhline(1 / 8, color="k", ls="--", lw=1, label="1/8")
        ax1.axhspan(1 / 8 - band, 1 / 8 + band, color="0.85", zorder=0, label="95th pct of max|f-1/8|, exact draws")  # fmt: skip
        ax1.set(ylim=(0.08, 0.17), xlabel="mode", ylabel="fraction of samples", title="mode fractions (weighting=debiased, default budget)")  # fmt: skip
        ax1.legend(fontsize=7, ncol=2)


SUMMARY_KEYS = ("max_abs_dev", "tv_to_uniform", "eval/nll", "eval/mode_error", "wall_s")


def summarise(result: Result) -> Result:
    raw = result["raw"]
    runs, fl = raw["per_seed"], raw["floor_exact_samples"]
    s = {k: spread([r[k] for r in runs]) for k in SUMMARY_KEYS}
    dev = [r["max_abs_dev"] for r in runs]
    within = sum(d <= fl["max_dev_p95"] for d in dev)
    holds, text = exceeds([r["eval/nll"] for r in runs], fl["nll_mean"])
    verdicts = [
        verdict("Every seed's mode fractions are as close to uniform as a perfect model's usually are: max |fraction − "
                f"1/8| within the 95th percentile of {fl['draws']} exact draws of {fl['n']} points", within == len(dev),
                f"{within}/{len(dev)} seeds within {fl['max_dev_p95']:.3f} (seeds {', '.join(f'{d:.3f}' for d in dev)}; "
                f"exact draws' mean {fl['max_dev_mean']:.3f})"),
        verdict("The samples' NLL under the true ring is above the truth's entropy (the exact draws' mean NLL)", holds,
                f"NLL {text} (95 % t over seeds); exact draws {fl['nll_mean']:.2f} ± {fl['nll_std']:.2f}"),
    ]  # fmt: skip
    rows = [[str(r["seed"]), " ".join(f"{f:.3f}" for f in r["mode_fractions"]), f"{r['max_abs_dev']:.3f}",
             f"{r['tv_to_uniform']:.3f}", f"{r['eval/nll']:.2f}", f"{r['wall_s']:.0f}"] for r in runs]  # fmt: skip
    rows.append([f"{fl['draws']} exact draws of {fl['n']}", "", f"{fl['max_dev_mean']:.3f} (95th pct {fl['max_dev_p95']:.3f})",
                 f"{fl['tv_mean']:.3f} (95th pct {fl['tv_p95']:.3f})", f"{fl['nll_mean']:.2f}", ""])  # fmt: skip
    body = [
        f"`{result['command']}` runs the README command `{raw['readme_command']}` per seed: "
        f"max |fraction − 1/8| {sd(s['max_abs_dev'])}, wall time {sd(s['wall_s'])} s.",
        table(["seed", "mode fractions", "max abs dev", "TV to uniform", "NLL", "wall s"], rows),
    ]
    figures = [("ring8_default.png", "ring8 mode fractions")]
    return harness.page(result, TITLE, body, verdicts, figures=figures, summary=s)


def measure(args: Args) -> None:
    runs = harness.cached_runs(args, {}, {"debiased": {}}, {"extra": args.extra}, lambda c: run_seed(c["seed"], args.extra),
                               lambda r: f"max|f-1/8| {r['max_abs_dev']:.4f} nll {r['eval/nll']:.3f} wall {r['wall_s']:.0f}s")["debiased"]  # fmt: skip
    raw = {"readme_command": "python -m tuner.train " + shlex.join(README_ARGS), "seeds": args.seeds,
           "note": "wall_s: each run's wall time on the 2-core machine that ran it (whatever else ran there)",
           "floor_exact_samples": floor(runs[0]["n_samples"], args.floor_draws),
           "per_seed": [{k: v for k, v in r.items() if k != "samples_head"} for r in runs]}  # fmt: skip
    result = harness.new(args, {"debiased": dict(a.split("=") for a in README_ARGS[1::2])}, raw, env="OMP_NUM_THREADS=1 ")  # fmt: skip
    harness.finish(args, result, summarise, lambda r, path: plot(r, path, runs[0]["samples_head"]))


if __name__ == "__main__":
    smoke = {"extra": ["--set", "train.steps=50", "--set", "eval.every=50"], "floor_draws": 50}
    harness.main(NAME, __doc__, summarise, measure, smoke, threads=1, seeds=[0, 1, 2], cache=True,
                 extra=[], floor_draws=FLOOR_DRAWS)  # fmt: skip
