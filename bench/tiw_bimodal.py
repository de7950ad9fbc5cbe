"""TIW-DSM on bimodal_biased: does the minority fraction of samples move from 0.1 toward 0.5?

Observed set 0.9/0.1 (20k), reference 0.5/0.5 (1k). For each seed one discriminator is trained
(tuner's TIW pre-training) and shared by the arms: plain denoising of the observed data
(a = 0), TIW-DSM at half strength (a = 0.5) and in full (a = 1), weight only and correction only (the paper's ablation).
Each arm trains with tuner.train.Trainer at a small budget and is scored on its samples
(eval/minority_fraction, eval/nll under the unbiased truth, eval/mode_error). The
discriminator is scored against the exact ratio: RMSE of log r and of σ∇ₓlog r (the ε-target
correction) on noised observed data at λ ~ q.

    .venv/bin/python bench/tiw_bimodal.py            # writes bench/results/tiw_bimodal.*
    .venv/bin/python bench/tiw_bimodal.py --smoke    # tiny budget, writes nothing
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

from models.param import add_noise  # noqa: E402
from models.schedules import alpha_sigma  # noqa: E402
from tuner.train import Trainer  # noqa: E402

OUT = ROOT / "bench" / "results"
ARMS = {
    "plain (a=0)": {"tiw.strength": 0.0},
    "TIW full (a=0.5)": {"tiw.strength": 0.5, "tiw.mode": "full"},
    "TIW full (a=1)": {"tiw.strength": 1.0, "tiw.mode": "full"},
    "weight only": {"tiw.strength": 1.0, "tiw.mode": "weight"},
    "correction only": {"tiw.strength": 1.0, "tiw.mode": "correction"},
}


def ratio_errors(trainer: Trainer, n: int = 4000) -> dict[str, float]:
    """Discriminator against the exact time-dependent ratio on noised observed data."""
    ds, tiw = trainer.dataset, trainer.objective.tiw
    g = torch.Generator().manual_seed(12345)
    x0 = ds.observed.sample(n, g)
    lam = trainer.density.sample(n, g)
    x = add_noise(x0, torch.randn(x0.shape, generator=g), lam).requires_grad_(True)
    exact = ds.truth.log_prob(x, lam) - ds.observed.log_prob(x, lam)
    grad_exact = torch.autograd.grad(exact.sum(), x)[0]
    est = tiw.log_ratio(x, lam)
    grad_est = torch.autograd.grad(est.sum(), x)[0]
    est, exact = est.detach(), exact.detach()
    sigma = alpha_sigma(lam)[1][:, None]
    return {
        "ratio/logr_rmse": float((est - exact).square().mean().sqrt()),
        "ratio/logr_std": float(exact.std()),
        "ratio/corr_rmse": float((sigma * (grad_est - grad_exact)).square().sum(1).mean().sqrt()),
        "ratio/corr_norm": float((sigma * grad_exact).square().sum(1).mean().sqrt()),
    }


def run_seed(seed: int, base: dict) -> dict[str, dict[str, float]]:
    # one discriminator per seed, trained exactly as the trainer's prepare() would
    first = Trainer(base | {"seed": seed, "tiw.strength": 1.0})
    disc_metrics = first.prepare()
    disc_metrics |= ratio_errors(first)
    state = first.objective.tiw.disc.state_dict()
    out = {"discriminator": disc_metrics}
    for name, arm in ARMS.items():
        t0 = time.perf_counter()
        trainer = Trainer(base | {"seed": seed} | arm)
        if trainer.objective.tiw is not None:
            trainer.objective.tiw.disc.load_state_dict(state)
            trainer.objective.tiw.disc.eval().requires_grad_(False)
        trainer.prepared = True
        while trainer.step < trainer.config["train.steps"]:
            trainer.train_step()
        metrics = trainer.evaluate()
        metrics["time/train_s"] = time.perf_counter() - t0
        out[name] = metrics
        out[name + "/samples"] = trainer.last_samples[:2000].tolist()
        print(
            f"seed {seed} {name:16s} minority {metrics['eval/minority_fraction']:.3f} "
            f"nll {metrics['eval/nll']:.3f} ({metrics['time/train_s']:.0f}s)",
            flush=True,
        )
    return out


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    summary = {}
    for name in ["discriminator", *ARMS]:
        keys = [k for k in runs[0][name] if not k.startswith("time/")]
        summary[name] = {}
        for k in keys:
            vals = [r[name][k] for r in runs]
            summary[name][k] = statistics.mean(vals)
            summary[name][k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return summary


def plot(runs: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(ARMS), figsize=(4 * (1 + len(ARMS)), 3.6))
    names = list(ARMS)
    means = [summary[n]["eval/minority_fraction"] for n in names]
    stds = [summary[n]["eval/minority_fraction_std"] for n in names]
    axes[0].bar(range(len(names)), means, yerr=stds, capsize=4)
    for i, n in enumerate(names):
        axes[0].scatter(
            [i] * len(runs), [r[n]["eval/minority_fraction"] for r in runs], color="k", s=8
        )
    axes[0].axhline(0.1, color="tab:red", ls="--", label="observed 0.1")
    axes[0].axhline(0.5, color="tab:green", ls="--", label="unbiased 0.5")
    axes[0].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axes[0].set_ylabel("minority fraction of samples")
    axes[0].legend(fontsize=7)
    for ax, n in zip(axes[1:], names, strict=True):
        s = torch.tensor(runs[0][n + "/samples"])
        ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.4)
        ax.set_title(f"{n} (seed 0)", fontsize=9)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-2, 2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, write nothing")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, seeds = (20, 1) if args.smoke else (args.steps, args.seeds)
    base = {
        "data": "bimodal_biased",
        "train.steps": steps,
        "train.batch": 256,
        "net.width": 128,
        "eval.samples": 5000,
        "eval.every": steps,
        "train.threads": 1,
        "tiw.disc_steps": 40 if args.smoke else 1500,
    }
    t0 = time.perf_counter()
    runs = [run_seed(seed, base) for seed in range(seeds)]
    summary = summarise(runs)
    print(json.dumps(summary, indent=2))
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.smoke:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    per_seed = [{k: v for k, v in r.items() if not k.endswith("/samples")} for r in runs]
    result = {
        "command": ".venv/bin/python bench/tiw_bimodal.py"
        + (f" --seeds {args.seeds}" if args.seeds != 3 else "")
        + (f" --steps {args.steps}" if args.steps != 2000 else ""),
        "config": base,
        "arms": ARMS,
        "seeds": seeds,
        "summary": summary,
        "per_seed": per_seed,
    }
    (OUT / "tiw_bimodal.json").write_text(json.dumps(result, indent=2))
    plot(runs, summary, OUT / "tiw_bimodal.png")


if __name__ == "__main__":
    main()
