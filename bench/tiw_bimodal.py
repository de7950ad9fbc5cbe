"""TIW-DSM on bimodal_biased: does the minority fraction of samples move from 0.1 toward 0.5?

Observed set 0.9/0.1 (20k), reference 0.5/0.5 (1k). Per seed one discriminator is pre-trained
and injected into every arm: plain denoising (a = 0), TIW-DSM at a = 0.5 and a = 1, weight only
and correction only (the paper's ablation), each scored on its samples (minority fraction; NLL,
MMD and SWD against the unbiased truth). The discriminator is scored against the exact ratio:
RMSE of log r and of σ∇ₓlog r (the ε-target correction) on noised observed data at λ ~ q.
"""

import functools
from pathlib import Path
from typing import Any

import harness
import torch
from claims import arm_rows, column, compare, judge, sd, summarise_arms, table
from harness import Args, Result

from models.param import add_noise
from models.schedules import alpha_sigma
from tuner.training.trainer import Trainer

NAME = "tiw_bimodal"
TITLE = "TIW-DSM on the biased mixture"
NOTE = (
    "the NLL under the unbiased truth cannot show a shift of the modes' shares: both modes have "
    "the same density there."
)
ARMS = {
    "plain (a=0)": {"tiw.strength": 0.0},
    "TIW full (a=0.5)": {"tiw.strength": 0.5, "tiw.mode": "full"},
    "TIW full (a=1)": {"tiw.strength": 1.0, "tiw.mode": "full"},
    "weight only": {"tiw.strength": 1.0, "tiw.mode": "weight"},
    "correction only": {"tiw.strength": 1.0, "tiw.mode": "correction"},
}
PLAIN, HALF, FULL, WEIGHT, CORR = ARMS
MINORITY = "eval/minority_fraction"
CLAIMS = [
    ("TIW-DSM (a = 1) raises the minority fraction of samples above plain denoising's (toward the unbiased 0.5)",
     MINORITY, [(FULL, PLAIN)], "max"),
    ("Half strength (a = 0.5) lands between plain denoising and TIW-DSM (a = 1)", MINORITY, [(HALF, PLAIN), (FULL, HALF)], "max"),
    ("The paper's ablation: the correction alone raises the minority fraction over plain denoising's", MINORITY, [(CORR, PLAIN)], "max"),
    ("The weight alone raises the minority fraction over plain denoising's", MINORITY, [(WEIGHT, PLAIN)], "max"),
] + [(f"TIW-DSM (a = 1) lowers the {what} the unbiased truth of its samples below plain denoising's", key, [(FULL, PLAIN)], "min")
     for key, what in (("eval/mmd", "MMD to"), ("eval/swd", "SWD to"), ("eval/nll", "NLL under"))]  # fmt: skip


def ratio_errors(trainer: Trainer, n: int = 4000) -> dict[str, float]:
    """The discriminator against the exact time-dependent ratio on noised observed data."""
    ds, tiw = trainer.dataset, trainer.objective.tiw
    g = torch.Generator().manual_seed(12345)
    x0 = ds.observed.sample(n, g)
    lam = trainer.density.sample(n, g)
    x = add_noise(x0, torch.randn(x0.shape, generator=g), lam).requires_grad_(True)
    exact = ds.truth.log_prob(x, lam) - ds.observed.log_prob(x, lam)
    grad_exact = torch.autograd.grad(exact.sum(), x)[0]
    est = tiw.log_ratio(x, lam)
    grad_est = torch.autograd.grad(est.sum(), x)[0]
    est, exact, sigma = est.detach(), exact.detach(), alpha_sigma(lam)[1][:, None]
    return {"ratio/logr_rmse": float((est - exact).square().mean().sqrt()), "ratio/logr_std": float(exact.std()),
            "ratio/corr_rmse": float((sigma * (grad_est - grad_exact)).square().sum(1).mean().sqrt()),
            "ratio/corr_norm": float((sigma * grad_exact).square().sum(1).mean().sqrt())}  # fmt: skip


def run_arm(config: dict[str, Any], disc: dict[str, Any]) -> dict[str, Any]:
    """One arm trained with the seed's shared discriminator, evaluated on its samples."""
    trainer, info = harness.train(config, **harness.components(config, disc=disc))
    metrics = trainer.evaluate() | {"time/train_s": info["time/train_s"]}
    return metrics | {"samples": trainer.last_samples[:2000].tolist()}


def summarise(result: Result) -> Result:
    raw = result["raw"]
    runs = {arm: raw["runs"][arm] for arm in ARMS}
    s = summarise_arms(raw["runs"], skip=[k for r in raw["runs"].values() for k in r[0] if k.startswith("time/")])  # fmt: skip
    verdicts = judge(runs, CLAIMS)
    minority = column(runs, "eval/minority_fraction")
    verdicts[2]["evidence"] += f"; against the full method: {compare(minority, [(CORR, FULL)], 'max')[1]}"  # fmt: skip
    c, disc = raw["config"], s["discriminator"]
    rows = arm_rows({arm: s[arm] for arm in ARMS}, [(MINORITY, 3), ("eval/nll", 3), ("eval/mmd", 2), ("eval/swd", 3)])  # fmt: skip
    per = sorted(zip(raw["runs"]["discriminator"], runs[FULL], strict=True), key=lambda r: r[0]["ratio/logr_rmse"])  # fmt: skip
    shares = ", ".join(f"{a['eval/minority_fraction']:.2f}" for _, a in per)
    rmse = ", ".join(f"{d['ratio/logr_rmse']:.3f}" for d, _ in per)
    body = [
        f"`{result['command']}` — bimodal_biased (observed 0.9/0.1, reference 0.5/0.5 of 5 % the "
        f"size), {c['train.steps']} steps of batch {c['train.batch']}, {raw['seeds']} seeds, one "
        f"discriminator per seed ({c['tiw.disc_steps']} steps at most, early-stopped after "
        f"{sd(disc['ratio/steps'])}) shared by the arms. The discriminator against the exact "
        f"time-dependent ratio: RMSE of log r {sd(disc['ratio/logr_rmse'], 2)} (the exact log r "
        f"has a spread of {disc['ratio/logr_std']['mean']:.2g}); RMSE of the ε-target correction "
        f"σ∇ₓlog r {sd(disc['ratio/corr_rmse'], 2)} (its exact RMS {disc['ratio/corr_norm']['mean']:.2g}).",
        table(["arm", "minority fraction (target 0.5)", "NLL under the truth", "MMD", "SWD"], rows),
        f"Per seed, {FULL} reaches minority fractions {shares} with discriminators of log-ratio RMSE {rmse}.",
    ]  # fmt: skip
    return harness.page(result, TITLE, body, verdicts, summary=s, figures=[("tiw_bimodal.png", "TIW on bimodal_biased")],
                        notes=[{"date": "2026-12-02", "text": NOTE}])  # fmt: skip


def plot(result: Result, path: Path, samples: dict[str, list]) -> None:
    """Minority fractions per arm (bars: mean ± std; dots: seeds), and seed 0's samples."""
    with harness.figure(path, 1, 1 + len(ARMS), figsize=(4 * (1 + len(ARMS)), 3.6)) as (_, axes):
        harness.bars(axes[0], result["summary"], {a: result["raw"]["runs"][a] for a in ARMS}, MINORITY)  # fmt: skip
        axes[0].axhline(0.1, color="tab:red", ls="--", label="observed 0.1")
        axes[0].axhline(0.5, color="tab:green", ls="--", label="unbiased 0.5")
        axes[0].set_ylabel("minority fraction of samples")
        axes[0].legend(fontsize=7)
        for ax, (n, xy) in zip(axes[1:], samples.items(), strict=True):
            ax.scatter(*torch.tensor(xy).T, s=1, alpha=0.4)
            ax.set(title=f"{n} (seed 0)", xlim=(-3, 3), ylim=(-2, 2))


def measure(args: Args) -> None:
    base = {"data": "bimodal_biased", "train.steps": args.steps, "train.batch": 256, "net.width": 128, "eval.samples": 5000,
            "eval.every": args.steps, "train.threads": 1, "tiw.disc_steps": args.disc_steps}  # fmt: skip
    disc = functools.cache(lambda seed: harness.shared_discriminator(base | {"seed": seed}, ratio_errors))  # fmt: skip
    runs = harness.cached_runs(args, base, ARMS, {}, lambda c: run_arm(c, disc(c["seed"])[0]),
                               lambda r: f"minority {r[MINORITY]:.3f} nll {r['eval/nll']:.3f}")  # fmt: skip
    samples = harness.first_samples(runs)
    raw = {"config": base, "seeds": len(args.seeds), "runs": {"discriminator": [disc(s)[1] for s in args.seeds]} | runs}  # fmt: skip
    harness.finish(args, harness.new(args, ARMS, raw), summarise, lambda r, path: plot(r, path, samples))  # fmt: skip


if __name__ == "__main__":
    smoke = {"seeds": [0], "steps": 20, "disc_steps": 40}
    harness.main(NAME, __doc__, summarise, measure, smoke, threads=1, seeds=[0, 1, 2], steps=2000,
                 disc_steps=1500)  # fmt: skip
