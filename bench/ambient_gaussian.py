"""Ambient diffusion on gaussian_noisy: x0 ~ N(0, diag(1, 0.25)) seen only as y = x0 + 0.5·η.

Closed forms for the per-dimension variance v of the samples:
  clean truth                         v              = (1.00, 0.25)
  naive training on y (to λ_max)      v + s_n²       = (1.25, 0.50)
  Tweedie alone, stop at s_n, E[x0|x] v²/(v + s_n²)  = (0.80, 0.125)
Arms (tuner.train.Trainer, small budget, several seeds): naive; Tweedie stopping at s_n (the
sampler returns the posterior mean there); Tweedie sampled on to λ_max anyway (levels never
trained, extrapolation); Tweedie + consistency (three settings of coefficient / chain / gap).

    .venv/bin/python bench/ambient_gaussian.py            # writes bench/results/ambient_gaussian.*
    .venv/bin/python bench/ambient_gaussian.py --smoke    # tiny budget, writes nothing
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.build import build_sampler  # noqa: E402
from tuner.train import Trainer  # noqa: E402

OUT = ROOT / "bench" / "results"
V = torch.tensor([1.0, 0.25])
SN = 0.5
EXPECTED = {
    "clean truth": V.tolist(),
    "naive: v + s_n^2": (V + SN**2).tolist(),
    "posterior mean at s_n: v^2/(v + s_n^2)": (V**2 / (V + SN**2)).tolist(),
}
ARMS = {
    "naive": ({"ambient.tweedie": False}, False),
    "tweedie, stop at s_n": ({}, False),
    "tweedie, no stop": ({}, True),
    "tweedie + consistency 0.015 (k=1, gap=1)": ({"ambient.consistency": 0.015}, False),
    "tweedie + consistency 1.0 (k=1, gap=4)": (
        {"ambient.consistency": 1.0, "ambient.chain_steps": 1, "ambient.gap": 4.0},
        False,
    ),
    "tweedie + consistency 1.0 (k=2, gap=4)": (
        {"ambient.consistency": 1.0, "ambient.chain_steps": 2, "ambient.gap": 4.0},
        False,
    ),
}


def samples_to_the_end(trainer: Trainer, n: int) -> torch.Tensor:
    """Samples on the full grid to noise.logsnr_max, ignoring the objective's stop."""
    sampler, grid = build_sampler(trainer.config, None)
    gen = torch.Generator().manual_seed(10_000 + trainer.config["seed"])
    x = torch.randn((n, 2), generator=gen)
    with torch.inference_mode():
        return sampler(trainer.ema.eval(), x, grid, generator=gen)


def run(seed: int, base: dict, arm: dict, full: bool, cache: dict) -> dict[str, float]:
    t0 = time.perf_counter()
    key = json.dumps(arm, sort_keys=True)
    if key in cache:  # "no stop" reuses the trained "stop at s_n" model
        trainer = cache[key]
    else:
        trainer = Trainer(base | {"seed": seed} | arm)
        trainer.prepare()
        while trainer.step < trainer.config["train.steps"]:
            trainer.train_step()
        cache[key] = trainer
    n = trainer.config["eval.samples"]
    x = samples_to_the_end(trainer, n) if full else trainer.sample(n)
    var = x.var(0)
    return {
        "var_x": float(var[0]),
        "var_y": float(var[1]),
        "cov_xy": float(torch.cov(x.T)[0, 1]),
        "rel_err_clean": float(((var - V) / V).abs().mean()),
        "time_s": time.perf_counter() - t0,
    }


def plot(per_seed: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    colors = ["tab:red", "tab:orange", "tab:purple", "tab:blue", "tab:cyan", "tab:green"]
    for name, color in zip(ARMS, colors, strict=True):
        vx = [r[name]["var_x"] for r in per_seed]
        vy = [r[name]["var_y"] for r in per_seed]
        ax.scatter(vx, vy, color=color, label=name, s=25)
    for (label, (vx, vy)), marker in zip(EXPECTED.items(), ["*", "P", "X"], strict=True):
        ax.scatter([vx], [vy], color="k", marker=marker, s=150, label=f"closed form: {label}")
    ax.set_xlabel("sample variance, dim 0")
    ax.set_ylabel("sample variance, dim 1")
    ax.set_title("gaussian_noisy (s_n = 0.5): per-seed sample variances")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, write nothing")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, seeds = (10, 1) if args.smoke else (args.steps, args.seeds)
    base = {
        "data": "gaussian_noisy",
        "train.steps": steps,
        "train.batch": 256,
        "net.width": 128,
        "eval.samples": 10000,
        "eval.every": steps,
        "train.threads": 1,
    }
    t0 = time.perf_counter()
    per_seed = []
    for seed in range(seeds):
        cache: dict = {}
        res = {}
        for name, (arm, full) in ARMS.items():
            res[name] = run(seed, base, arm, full, cache)
            r = res[name]
            print(
                f"seed {seed} {name:42s} var ({r['var_x']:.3f}, {r['var_y']:.3f}) "
                f"({r['time_s']:.0f}s)",
                flush=True,
            )
        per_seed.append(res)
    summary = {}
    for name in ARMS:
        summary[name] = {}
        for k in ("var_x", "var_y", "cov_xy", "rel_err_clean"):
            vals = [r[name][k] for r in per_seed]
            summary[name][k] = statistics.mean(vals)
            summary[name][k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(json.dumps(summary, indent=2))
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.smoke:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    arms = {
        name: {"config": arm, "sample_to_logsnr_max": full} for name, (arm, full) in ARMS.items()
    }
    result = {
        "config": base,
        "arms": arms,
        "closed_form": EXPECTED,
        "summary": summary,
        "per_seed": per_seed,
    }
    (OUT / "ambient_gaussian.json").write_text(json.dumps(result, indent=2))
    plot(per_seed, OUT / "ambient_gaussian.png")


if __name__ == "__main__":
    main()
