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
    .venv/bin/python bench/ring8_default.py --smoke         # 50 steps, writes nothing

Each seed's numbers are cached (--cache) so the seeds can be run in separate invocations; the
invocation that has every requested seed writes the JSON and PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.data import load_dataset  # noqa: E402

OUT = ROOT / "bench" / "results"
NAME = "ring8_default"
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
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--smoke", action="store_true", help="50 steps, write nothing")
    parser.add_argument("--cache", default=f"/tmp/diffsearch_bench/{NAME}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    extra = ["--set", "train.steps=50", "--set", "eval.every=50"] if args.smoke else []
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        file = cache / f"seed{seed}.json"
        if file.exists() and not args.smoke:
            runs.append(json.loads(file.read_text()))
            print(f"seed {seed}: cached", flush=True)
            continue
        r = run_seed(seed, extra)
        if not args.smoke:
            file.write_text(json.dumps(r))
        runs.append(r)
        print(
            f"seed {seed}: TV {r['tv_to_uniform']:.4f} max|f-1/8| {r['max_abs_dev']:.4f} "
            f"nll {r['eval/nll']:.3f} wall {r['wall_s']:.0f}s",
            flush=True,
        )
    fl = floor(runs[0]["n_samples"], 50 if args.smoke else FLOOR_DRAWS)
    keys = ["max_abs_dev", "tv_to_uniform", "eval/nll", "eval/mode_error", "wall_s"]
    summary = {
        k: {
            "mean": float(np.mean([r[k] for r in runs])),
            "std": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
        }
        for k in keys
    }
    print(json.dumps({"summary": summary, "floor": fl}, indent=2))
    if args.smoke:
        return
    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python bench/ring8_default.py --seeds "
        + " ".join(map(str, args.seeds)),
        "readme_command": "python -m tuner.train " + shlex.join(README_ARGS),
        "seeds": args.seeds,
        "note": "wall_s: each run's wall time on the 2-core machine that ran it (whatever else ran there)",
        "summary": summary,
        "floor_exact_samples": fl,
        "per_seed": [{k: v for k, v in r.items() if k != "samples_head"} for r in runs],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, fl, OUT / f"{NAME}.png")
    print(f"wrote {OUT / NAME}.json and .png")


if __name__ == "__main__":
    main()
