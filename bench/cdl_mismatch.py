"""CDL on ring8: does the contrastive term lower the denoiser's error at mismatched levels?

All arms train the same denoising term (constant weighting, cosine q) with
tuner.train.Trainer at a small budget; the CDL arms add cdl.coef × CDL (config defaults for ζ;
Monte-Carlo points and fraction at their defaults 4 and 0.25, and at 16 and 0.125). Scored against the exact ε* of the ring8 mixture:
  mismatched: w = α_λ x0 + σ_λ ε (a sample of level λ) queried at the noisier level
              λ' = mismatched_logsnr(λ, ζ), error ‖ε̂(w, λ') − ε*(w, λ')‖²/D — the off-training-
              distribution queries CDL trains on (λ ~ CDL's importance density, ζ ~ its ζ density)
  matched:    the same levels λ' with on-distribution inputs w' = α_λ' x0 + σ_λ' ε
and by sampling: Picard sweeps to converge (50 cosine steps, tol 1e-3) and few-step DDIM
quality (eval/nll, eval/mmd against the truth). Arms compare at equal steps; one more arm trains
plain denoising for as many steps as fit in the training time of the "cdl 0.1" arm (CPU time
of the one training thread, measured per seed), to compare at equal wall-clock.

    .venv/bin/python bench/cdl_mismatch.py            # writes bench/results/cdl_mismatch.*
    .venv/bin/python bench/cdl_mismatch.py --smoke    # tiny budget, writes nothing
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.cdl import mismatched_logsnr  # noqa: E402
from models.param import add_noise  # noqa: E402
from models.picard import sample_picard  # noqa: E402
from models.samplers import sample_ddim  # noqa: E402
from models.schedules import logsnr_grid  # noqa: E402
from tuner.build import build_objective  # noqa: E402
from tuner.config import resolve  # noqa: E402
from tuner.metrics import lowdim_metrics  # noqa: E402
from tuner.train import Trainer  # noqa: E402

OUT = ROOT / "bench" / "results"
ARMS = {
    "plain": {"cdl.coef": 0.0},
    "cdl 0.1": {"cdl.coef": 0.1},
    "cdl 1.0": {"cdl.coef": 1.0},
    "cdl 1.0, M=16, fraction 0.125": {"cdl.coef": 1.0, "cdl.mc_points": 16, "cdl.fraction": 0.125},
}
EQUAL_TIME_OF = "cdl 0.1"
EQUAL_TIME = f"plain, wall-clock of {EQUAL_TIME_OF}"  # more steps, the same training time
LAMBDA_BINS = [(-6.0, -2.0), (-2.0, 2.0), (2.0, 6.0), (6.0, 12.0)]


@torch.no_grad()
def eps_errors(trainer: Trainer, n: int = 20000) -> dict[str, float]:
    truth, model = trainer.dataset.truth, trainer.ema.eval()
    cfg = resolve(trainer.config | {"cdl.coef": 1.0})
    cdl = build_objective(cfg, trainer.dataset, trainer.weighting, trainer.density, None).cdl
    g = torch.Generator().manual_seed(777)
    x0 = truth.sample(n, g)
    lam = cdl.q.sample(n, g)
    zeta = cdl.zeta.sample(n, g)
    lam_mis = mismatched_logsnr(lam, zeta)
    eps = torch.randn(x0.shape, generator=g)
    w = add_noise(x0, eps, lam)  # a sample of level λ, queried at λ' < λ
    err_mis = (model(w, lam_mis) - truth.eps_star(w, lam_mis)).square().mean(1)
    w_on = add_noise(x0, eps, lam_mis)  # a sample of level λ'
    err_on = (model(w_on, lam_mis) - truth.eps_star(w_on, lam_mis)).square().mean(1)
    out = {"eps_err/mismatched": float(err_mis.mean()), "eps_err/matched": float(err_on.mean())}
    for lo, hi in LAMBDA_BINS:
        sel = (lam_mis >= lo) & (lam_mis < hi)
        out[f"eps_err/mismatched[{lo:g},{hi:g})"] = float(err_mis[sel].mean())
        out[f"eps_err/matched[{lo:g},{hi:g})"] = float(err_on[sel].mean())
    return out


@torch.no_grad()
def sampling(trainer: Trainer, n: int = 2000) -> dict[str, float]:
    ds, model = trainer.dataset, trainer.ema.eval()
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(99))
    out = {}
    info: dict = {}
    grid = logsnr_grid("cosine", 50)
    xs = sample_picard(model, x, grid, tol=1e-3, info=info)
    out["picard/iterations"] = float(info["iterations"])
    out["picard/nll"] = lowdim_metrics(xs, ds.truth, ds.test, None)["eval/nll"]
    for steps in (5, 10):
        xs = sample_ddim(model, x, logsnr_grid("cosine", steps))
        m = lowdim_metrics(xs, ds.truth, ds.test, None)
        out[f"ddim{steps}/nll"], out[f"ddim{steps}/mmd"] = m["eval/nll"], m["eval/mmd"]
    return out


def run_arm(config: dict, steps: int) -> dict[str, float]:
    """Train `steps` steps of `config`; its errors, sampling metrics, and times."""
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(config | {"train.steps": steps, "eval.every": steps})
    while trainer.step < steps:
        trainer.train_step()
    train_s = time.process_time() - c0  # CPU time of one thread: robust to other jobs
    out = eps_errors(trainer) | sampling(trainer)
    return out | {"steps": float(steps), "train_s": train_s, "time_s": time.perf_counter() - t0}


def report(seed: int, name: str, r: dict[str, float]) -> None:
    print(
        f"seed {seed} {name:34s} mismatched {r['eps_err/mismatched']:.4f} "
        f"matched {r['eps_err/matched']:.4f} picard {r['picard/iterations']:.0f} "
        f"ddim5 nll {r['ddim5/nll']:.3f} ({r['steps']:.0f} steps, {r['time_s']:.0f}s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, write nothing")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, seeds = (10, 1) if args.smoke else (args.steps, args.seeds)
    base = {
        "data": "ring8",
        "train.steps": steps,
        "train.batch": 256,
        "net.width": 128,
        "eval.every": steps,
        "train.threads": 1,
    }
    t0 = time.perf_counter()
    per_seed = []
    for seed in range(seeds):
        res = {}
        for name, arm in ARMS.items():
            res[name] = run_arm(base | {"seed": seed} | arm, steps)
            report(seed, name, res[name])
        # Plain denoising given the training wall-clock of the cheapest CDL arm (this seed's).
        ratio = res[EQUAL_TIME_OF]["train_s"] / res["plain"]["train_s"]
        res[EQUAL_TIME] = run_arm(base | {"seed": seed}, round(steps * ratio))
        report(seed, EQUAL_TIME, res[EQUAL_TIME])
        per_seed.append(res)
    summary = {}
    for name in per_seed[0]:
        summary[name] = {}
        for k in per_seed[0][name]:
            vals = [r[name][k] for r in per_seed]
            summary[name][k] = statistics.mean(vals)
            summary[name][k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(json.dumps(summary, indent=2))
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.smoke:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    arms = ARMS | {
        EQUAL_TIME: {"train.steps": f"steps × train_s({EQUAL_TIME_OF}) / train_s(plain)"}
    }
    result = {
        "command": ".venv/bin/python bench/cdl_mismatch.py"
        + (f" --seeds {args.seeds}" if args.seeds != 3 else "")
        + (f" --steps {args.steps}" if args.steps != 2000 else ""),
        "config": base,
        "arms": arms,
        "summary": summary,
        "per_seed": per_seed,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    (OUT / "cdl_mismatch.json").write_text(json.dumps(result, indent=2))
    plot(per_seed, OUT / "cdl_mismatch.png")


def plot(per_seed: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = [f"[{lo:g},{hi:g})" for lo, hi in LAMBDA_BINS]
    for kind, ax in zip(("mismatched", "matched"), axes, strict=True):
        names = list(per_seed[0])
        for j, name in enumerate(names):
            vals = [[r[name][f"eps_err/{kind}{lab}"] for lab in labels] for r in per_seed]
            mean = torch.tensor(vals).mean(0)
            width = 0.8 / len(names)
            ax.bar(torch.arange(len(labels)) + width * j, mean, width=width, label=name)
            for v in vals:
                ax.scatter(torch.arange(len(labels)) + width * j, v, color="k", s=6)
        ax.set_xticks(torch.arange(len(labels)) + 0.4, [f"λ' in {lab}" for lab in labels])
        ax.set_yscale("log")
        ax.set_ylabel("‖ε̂ − ε*‖²/D")
        ax.set_title(f"{kind} queries (ring8)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
