"""Loss weightings on 8x8 digits at fixed capacity and budget: FID at few and many DDIM steps.

The six arms of bench/weighting_ring.py (constant, debiased, min-SNR γ=5, P2 k=1 γ=1, EDM,
learned), all normalised by E_q[w], trained on `digits` with the default UNet, cosine q(λ) and
the same optimiser and budget by tuner.training.trainer.Trainer. For each trained EMA model:

- FID (and KID, class-fraction error) of 1000 DDIM samples at 10, 25 and 100 steps against the
  450-image test split, with the digits CNN extractor (tuner.evaluation.metrics.image_metrics with
  default_extractor("digits"));
- held-out denoising error by log-SNR bin: test images x0, λ ~ U(bin) over 8 bins in [-10, 10],
  mean ‖x̂0 − x0‖² per image (sum over the 64 pixels; it includes the irreducible MMSE, which is
  the same for every arm).

The floor of the FID at this sample size is that of 1000 training images against the test split
(computed here once, same extractor).

    .venv/bin/python bench/weighting_digits.py --seeds 0 1 --steps 1500   # writes results
    .venv/bin/python bench/weighting_digits.py --smoke                    # seconds, to /tmp
    .venv/bin/python bench/weighting_digits.py --resummarise   # summary and verdicts again

Runs are cached per (weighting, seed, configuration) under --cache, as in weighting_ring.py.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import harness
import torch
from harness import Result, compare, some, verdict
from weighting_ring import ARMS, BINS, columns, summarise_runs, train

from models.param import add_noise
from tuner.data.presets import load_dataset
from tuner.evaluation.metrics import default_extractor, image_metrics
from tuner.training.trainer import Trainer

NAME = "weighting_digits"
SAMPLER_STEPS = (10, 25, 100)
IMAGE_METRICS = ("eval/fid", "eval/kid", "eval/mode_error")


def fid_of(samples: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    m = image_metrics(samples, "digits", test, default_extractor("digits"))
    return {k: m[k] for k in IMAGE_METRICS}


@torch.inference_mode()
def denoise_error_by_bin(trainer: Trainer, draws: int = 2) -> list[float]:
    """Held-out mean ‖x̂0 − x0‖² per image in each log-SNR bin (the same points for every arm)."""
    model, test = trainer.ema.eval(), trainer.dataset.test
    g = torch.Generator().manual_seed(2024)
    out = []
    for lo, hi in zip(BINS[:-1].tolist(), BINS[1:].tolist(), strict=True):
        x0 = test.repeat(draws, 1, 1, 1)
        lam = lo + (hi - lo) * torch.rand(len(x0), generator=g)
        x = add_noise(x0, torch.randn(x0.shape, generator=g), lam)
        out.append(float((model.x0(x, lam) - x0).square().flatten(1).sum(1).mean()))
    return out


def run_one(config: dict[str, Any], n_samples: int) -> dict[str, Any]:
    trainer, train_s = train(config)
    t0 = time.perf_counter()
    sampling = {}
    for steps in SAMPLER_STEPS:
        trainer.config["sampler.steps"] = steps
        sampling[str(steps)] = fid_of(trainer.sample(n_samples), trainer.dataset.test)
    return {
        "sampling": sampling,
        "denoise_err": denoise_error_by_bin(trainer),
        "time/train_s": train_s,
        "time/eval_s": time.perf_counter() - t0,
    }


def real_floor(n: int) -> dict[str, float]:
    """FID/KID of n training images (seeded subset) against the test split."""
    ds = load_dataset("digits")
    idx = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))[:n]
    return fid_of(ds.train[idx], ds.test) | {"n": len(idx)}


def flat_metrics(run: dict[str, Any]) -> dict[str, float]:
    out = {}
    for steps, m in run["sampling"].items():
        out |= {f"ddim{steps}/{k}": v for k, v in m.items()}
    out |= {f"denoise_err/bin{i}": v for i, v in enumerate(run["denoise_err"])}
    return out


def summarise(result: Result) -> Result:
    """The summary and the verdicts, from the per-seed runs and the real-data floor."""
    runs, steps = result["per_seed"], result["sampler_steps"]
    result["summary"] = summarise_runs(runs, flat_metrics)
    last, few = steps[-1], steps[0]
    others = [a for a in runs if a != "constant"]
    fid = columns(runs, flat_metrics, f"ddim{last}/eval/fid")
    order = sorted(fid, key=lambda a: statistics.mean(fid[a]))
    by_mean = ", ".join(f"{a} {statistics.mean(fid[a]):.3f}" for a in order)
    floor = result["real_data_floor"]
    holds = some(compare(fid, [(a, "constant")], "min")[0] for a in others)
    _, ev = compare(fid, [(a, "constant") for a in others], "min")
    verdicts = [
        verdict(
            f"Reweighting gives better digits than constant ε-MSE: some weighting has a lower "
            f"FID than constant with {last} DDIM steps",
            holds,
            f"by mean FID {by_mean} (real train digits, N = {floor['n']}: "
            f"{floor['eval/fid']:.3f}); {ev}",
        )
    ]
    paper = [("debiased", b) for b in ("constant", "p2", "min_snr") if b in runs]
    holds, ev = compare(fid, paper, "min")
    claim = "The paper's claim: debiased weighting gives better samples than constant, P2 and "
    verdicts.append(verdict(claim + f"min-SNR weighting ({last}-step FID)", holds, ev))
    err = columns(runs, flat_metrics, f"ddim{last}/eval/mode_error")
    holds, ev = compare(err, [(a, "constant") for a in others], "min")
    claim = "Every weighting's class proportions are closer to the test split's than constant's "
    verdicts.append(verdict(claim + f"({last} steps; total-variation error)", holds, ev))
    both = {f"{a}@{k}": columns(runs, flat_metrics, f"ddim{k}/eval/fid")[a]
            for a in runs for k in (few, last)}  # fmt: skip
    holds, ev = compare(both, [(f"{a}@{last}", f"{a}@{few}") for a in runs], "min")
    verdicts.append(verdict(f"Every weighting's FID is higher with {few} DDIM steps than with "
                            f"{last}", holds, ev))  # fmt: skip
    result["verdicts"] = verdicts
    return result


def plot(runs: dict[str, list[dict]], summary: dict[str, Any], floor: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    centres = (0.5 * (BINS[:-1] + BINS[1:])).tolist()
    for arm in runs:
        s = summary[arm]
        m = [s[f"ddim{k}/eval/fid"]["mean"] for k in SAMPLER_STEPS]
        e = [s[f"ddim{k}/eval/fid"]["std"] for k in SAMPLER_STEPS]
        ax0.errorbar(SAMPLER_STEPS, m, yerr=e, marker="o", ms=3, capsize=2, label=arm)
        m = [s[f"denoise_err/bin{i}"]["mean"] for i in range(len(centres))]
        e = [s[f"denoise_err/bin{i}"]["std"] for i in range(len(centres))]
        ax1.errorbar(centres, m, yerr=e, marker="o", ms=3, capsize=2, label=arm)
    ax0.axhline(floor["eval/fid"], color="k", ls="--", lw=1, label=f"real data, n={floor['n']}")
    ax0.set_xscale("log")
    ax0.set_xticks(SAMPLER_STEPS, [str(k) for k in SAMPLER_STEPS])
    ax0.minorticks_off()
    ax0.set_xlabel("DDIM steps")
    ax0.set_ylabel("FID (digits CNN), 1000 samples vs test")
    ax0.legend(fontsize=7)
    ax1.set_yscale("log")
    ax1.set_xlabel("log-SNR λ (bin centre)")
    ax1.set_ylabel("held-out mean ‖x̂0 − x0‖² per image")
    n_seeds = len(next(iter(runs.values())))
    fig.suptitle(f"digits, mean ± std over {n_seeds} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2], steps=1500, cache=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--samples", type=int, default=1000, help="samples per sampler setting")
    args = parser.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    torch.set_num_threads(1)
    if args.smoke:
        args.seeds, args.steps, args.samples, args.arms = [0], 5, 50, ["constant", "debiased"]
    base = {
        "data": "digits",
        "train.steps": args.steps,
        "train.batch": args.batch,
        "train.threads": 1,
        "eval.samples": args.samples,
        "eval.every": args.steps,
    }
    extra = {"samples": args.samples, "bins": BINS.tolist(), "sampler_steps": SAMPLER_STEPS}
    t0 = time.perf_counter()

    def run(arm: str, seed: int) -> Result:
        config = base | ARMS[arm] | {"seed": seed}
        fn = lambda: run_one(config, args.samples)  # noqa: E731
        r = harness.cached(harness.cache_dir(args), config, extra, fn)
        print(
            f"seed {seed} {arm:9s} FID@10/25/100 "
            + "/".join(f"{r['sampling'][str(k)]['eval/fid']:.3f}" for k in SAMPLER_STEPS)
            + f"  ({r['time/train_s']:.0f}s train, {r['time/eval_s']:.0f}s eval)",
            flush=True,
        )
        return r

    runs = harness.arm_seed_loop(args.arms, args.seeds, run)
    floor = real_floor(args.samples)
    print(f"real-data floor: {floor}\ntotal {time.perf_counter() - t0:.0f}s")
    result = {
        "command": harness.command(args, env="OMP_NUM_THREADS=1 "),
        "config": base,
        "arms": {a: ARMS[a] for a in args.arms},
        "seeds": args.seeds,
        "bins": BINS.tolist(),
        "sampler_steps": list(SAMPLER_STEPS),
        "real_data_floor": floor,
        "note": "time/* measured on a shared 2-core machine under load from other jobs",
        "per_seed": runs,
    }
    result = harness.finish(args, result, summarise)
    plot(runs, result["summary"], floor, harness.out_path(args).with_suffix(".png"))


if __name__ == "__main__":
    main()
