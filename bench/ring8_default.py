"""The README command on ring8, per seed: how close to uniform are the samples' mode fractions?

Runs exactly `python -m tuner.train --set data=ring8 --set weighting=debiased` (default budget:
3000 steps, batch 256, 2000 samples by 50-step DDIM) for each seed, as a subprocess with
`--out` under a temporary folder and `--quiet`, and scores its samples.npy under the true ring
(`truth.mode_fractions`): the eight fractions, max |fraction − 1/8| and the total-variation
distance to uniform, plus eval/nll from metrics.json and the wall time of the command.

The floor for these numbers is the sampling noise of a perfect model: the same statistics of
2000 points drawn from the truth itself, over many draws (mean and 95th percentile; for the NLL,
mean and std, i.e. the entropy of the truth).

    .venv/bin/python bench/ring8_default.py --seeds 0 1 2   # writes bench/results/ring8_default.*
    .venv/bin/python bench/ring8_default.py --smoke         # 50 steps, to a temporary folder
    .venv/bin/python bench/ring8_default.py --resummarise   # summary and verdicts again

Each seed's numbers are cached (--cache) so the seeds can be run in separate invocations; the
invocation that has every requested seed writes the JSON and PNG.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from claims import exceeds, sd, spread, table, verdict
from harness import Result

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
    truth = load_dataset("ring8").truth
    g = torch.Generator().manual_seed(1234)
    tvs, maxes, nlls = [], [], []
    for _ in range(draws):
        x = truth.sample(n, g)
        tv, mx = tv_and_max(truth.mode_fractions(x).numpy())
        tvs.append(tv)
        maxes.append(mx)
        nlls.append(float(-truth.log_prob(x).double().mean()))
    return {
        "n": n,
        "draws": draws,
        "tv_mean": float(np.mean(tvs)),
        "tv_p95": float(np.percentile(tvs, 95)),
        "max_dev_mean": float(np.mean(maxes)),
        "max_dev_p95": float(np.percentile(maxes, 95)),
        "nll_mean": float(np.mean(nlls)),  # entropy of the truth, estimated
        "nll_std": float(np.std(nlls)),
    }


def run_seed(seed: int, extra: list[str]) -> dict[str, Any]:
    """The README command for one seed, in a subprocess; its samples scored under the truth."""
    truth = load_dataset("ring8").truth
    with tempfile.TemporaryDirectory(prefix="ring8_default_") as tmp:
        out = Path(tmp) / f"seed{seed}"
        args = ["-m", "tuner.train", *README_ARGS, *extra]
        if seed:
            args += ["--set", f"seed={seed}"]
        cmd = [sys.executable, *args, "--out", str(out), "--quiet"]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=harness.ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        samples = np.load(out / "samples.npy")
        metrics = json.loads((out / "metrics.json").read_text())
    fractions = truth.mode_fractions(torch.from_numpy(samples)).numpy()
    tv, mx = tv_and_max(fractions)
    final = metrics["final"]
    return {
        "seed": seed,
        "command": "python " + shlex.join(args) + " --out DIR --quiet",
        "wall_s": wall,
        "n_samples": int(len(samples)),
        "mode_fractions": [float(f) for f in fractions],
        "max_abs_dev": mx,
        "tv_to_uniform": tv,
        "eval/nll": final["eval/nll"],
        "eval/mode_error": final["eval/mode_error"],
        "eval/swd": final["eval/swd"],
        "eval/mmd": final["eval/mmd"],
        "time/total_s": final["time/total_s"],
        "samples_head": samples[:2000].tolist(),
    }


def plot(runs: list[dict], fl: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    s = np.array(runs[0]["samples_head"])
    ax0.scatter(s[:, 0], s[:, 1], s=1, alpha=0.5)
    ax0.set_aspect("equal")
    ax0.set_title(f"seed {runs[0]['seed']}: {len(s)} samples")
    width = 0.8 / len(runs)
    for i, r in enumerate(runs):
        x = np.arange(8) + (i - (len(runs) - 1) / 2) * width
        ax1.bar(x, r["mode_fractions"], width=width, label=f"seed {r['seed']}")
    ax1.axhline(1 / 8, color="k", ls="--", lw=1, label="1/8")
    band = fl["max_dev_p95"]
    ax1.axhspan(
        1 / 8 - band,
        1 / 8 + band,
        color="0.85",
        zorder=0,
        label="95th pct of max|f-1/8|, exact draws",
    )
    ax1.set_ylim(0.08, 0.17)
    ax1.set_xlabel("mode")
    ax1.set_ylabel("fraction of samples")
    ax1.legend(fontsize=7, ncol=2)
    ax1.set_title("mode fractions (weighting=debiased, default budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


SUMMARY_KEYS = ("max_abs_dev", "tv_to_uniform", "eval/nll", "eval/mode_error", "wall_s")


def summarise(result: Result) -> Result:
    """Mean ± std over seeds, the table, and the verdicts against the exact draws."""
    raw = result["raw"]
    runs, fl = raw["per_seed"], raw["floor_exact_samples"]
    s = {k: spread([r[k] for r in runs]) for k in SUMMARY_KEYS}
    dev = [r["max_abs_dev"] for r in runs]
    within = sum(d <= fl["max_dev_p95"] for d in dev)
    holds, text = exceeds([r["eval/nll"] for r in runs], fl["nll_mean"])
    verdicts = [
        verdict(
            "Every seed's mode fractions are as close to uniform as a perfect model's usually "
            f"are: max |fraction − 1/8| within the 95th percentile of {fl['draws']} exact draws "
            f"of {fl['n']} points",
            within == len(dev),
            f"{within}/{len(dev)} seeds within {fl['max_dev_p95']:.3f} (seeds "
            f"{', '.join(f'{d:.3f}' for d in dev)}; exact draws' mean {fl['max_dev_mean']:.3f})",
        ),
        verdict(
            "The samples' NLL under the true ring is above the truth's entropy (the exact draws' "
            "mean NLL)",
            holds,
            f"NLL {text} (95 % t over seeds); exact draws {fl['nll_mean']:.2f} ± "
            f"{fl['nll_std']:.2f}",
        ),
    ]
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


def main() -> None:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2], cache=True)
    args = parser.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    torch.set_num_threads(1)
    extra = ["--set", "train.steps=50", "--set", "eval.every=50"] if args.smoke else []

    def run(arm: str, seed: int) -> Result:
        r = harness.cached(harness.cache_dir(args), {"seed": seed}, {"extra": extra},
                           lambda: run_seed(seed, extra))  # fmt: skip
        print(
            f"seed {seed}: TV {r['tv_to_uniform']:.4f} max|f-1/8| {r['max_abs_dev']:.4f} "
            f"nll {r['eval/nll']:.3f} wall {r['wall_s']:.0f}s",
            flush=True,
        )
        return r

    runs = harness.arm_seed_loop(["debiased"], args.seeds, run)["debiased"]
    fl = floor(runs[0]["n_samples"], 50 if args.smoke else FLOOR_DRAWS)
    raw = {
        "readme_command": "python -m tuner.train " + shlex.join(README_ARGS),
        "seeds": args.seeds,
        "note": "wall_s: each run's wall time on the 2-core machine that ran it (whatever else ran there)",
        "floor_exact_samples": fl,
        "per_seed": [{k: v for k, v in r.items() if k != "samples_head"} for r in runs],
    }
    result = harness.new(
        args,
        {"debiased": {"data": "ring8", "weighting": "debiased"}},
        raw,
        env="OMP_NUM_THREADS=1 ",
    )
    harness.finish(args, result, summarise, lambda _, path: plot(runs, fl, path))


if __name__ == "__main__":
    main()
