"""Loss weightings on 8x8 digits at fixed capacity and budget: FID at few and many DDIM steps.

The six arms of bench/weighting_ring.py on `digits`, with the default UNet. Each EMA model gets
the FID, KID and class-fraction error of 1000 DDIM samples at 10, 25 and 100 steps against the
test split (digits CNN), and its held-out error ‖x̂0 − x0‖² per image in 8 log-SNR bins over
[-10, 10]. The FID's floor at this sample size: 1000 training images. Runs are cached.
"""

import statistics
from pathlib import Path
from typing import Any

import harness
import torch
from claims import column, compare, sd, some, summarise_arms, table, verdict
from harness import Args, Result
from weighting_ring import ARMS, BINS, CENTRES, EDGES, bin_points, flat_runs, run_one

from tuner.data.presets import load_dataset
from tuner.evaluation.metrics import default_extractor, image_metrics
from tuner.training.trainer import Trainer

NAME = "weighting_digits"
TITLE = "Weighting on digits"
SAMPLER_STEPS = (10, 25, 100)
IMAGE_METRICS = ("eval/fid", "eval/kid", "eval/mode_error")


def fid_of(samples: torch.Tensor, ds: Any) -> dict[str, float]:
    m = image_metrics(samples, "digits", ds.test, default_extractor("digits"))
    return {k: m[k] for k in IMAGE_METRICS}


@torch.inference_mode()
def denoise_error_by_bin(trainer: Trainer, draws: int = 2) -> dict[str, list[float]]:
    """Held-out mean ‖x̂0 − x0‖² per image in each log-SNR bin (the same points for every arm)."""
    model, x0 = trainer.ema.eval(), trainer.dataset.test.repeat(draws, 1, 1, 1)
    g, out = torch.Generator().manual_seed(2024), []
    for lo, hi in EDGES:
        lam, x = bin_points(lo, hi, x0, g)
        out.append(float((model.x0(x, lam) - x0).square().flatten(1).sum(1).mean()))
    return {"denoise_err": out}


def real_floor(n: int) -> dict[str, float]:
    """FID/KID of n training images (seeded subset) against the test split."""
    ds = load_dataset("digits")
    idx = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))[:n]
    return fid_of(ds.train[idx], ds) | {"n": len(idx)}


def summarise(result: Result) -> Result:
    raw = result["raw"]
    runs, steps, floor = flat_runs(raw), raw["sampler_steps"], raw["real_data_floor"]
    summary, (few, last) = summarise_arms(runs), (steps[0], steps[-1])
    others = [a for a in runs if a != "constant"]
    fid = column(runs, f"ddim{last}/eval/fid")
    by_mean = ", ".join(f"{a} {statistics.mean(fid[a]):.3f}" for a in sorted(fid, key=lambda a: statistics.mean(fid[a])))  # fmt: skip
    _, ev = compare(fid, [(a, "constant") for a in others], "min")
    paper = [("debiased", b) for b in ("constant", "p2", "min_snr") if b in runs]
    err = column(runs, f"ddim{last}/eval/mode_error")
    both = {f"{a}@{k}": column(runs, f"ddim{k}/eval/fid")[a] for a in runs for k in (few, last)}
    verdicts = [
        verdict(f"Reweighting gives better digits than constant ε-MSE: some weighting has a lower FID than constant "
                f"with {last} DDIM steps", some(compare(fid, [(a, "constant")], "min")[0] for a in others),
                f"by mean FID {by_mean} (real train digits, N = {floor['n']}: {floor['eval/fid']:.3f}); {ev}"),
        verdict("The paper's claim: debiased weighting gives better samples than constant, P2 and min-SNR weighting "
                f"({last}-step FID)", *compare(fid, paper, "min")),
        verdict("Every weighting's class proportions are closer to the test split's than constant's "
                f"({last} steps; total-variation error)", *compare(err, [(a, "constant") for a in others], "min")),
        verdict(f"Every weighting's FID is higher with {few} DDIM steps than with {last}",
                *compare(both, [(f"{a}@{last}", f"{a}@{few}") for a in runs], "min")),
    ]  # fmt: skip
    head = ["weighting"] + [f"FID, DDIM-{k}" for k in steps] + [f"class-proportion err, DDIM-{last}"]  # fmt: skip
    rows = [[arm] + [sd(v[f"ddim{k}/eval/fid"]) for k in steps] + [sd(v[f"ddim{last}/eval/mode_error"], 2)] for arm, v in summary.items()]  # fmt: skip
    rows.append([f"real train digits (N = {floor['n']})"] + [f"{floor['eval/fid']:.3g}"] * len(steps) + [f"{floor['eval/mode_error']:.2g}"])  # fmt: skip
    c = raw["config"]
    body = [
        f"`{result['command']}` — digits, {c['train.steps']} steps of batch {c['train.batch']}, "
        f"the same UNet for every arm, seeds {raw['seeds']}; FID by the digits CNN on "
        f"{c['eval.samples']} samples against the test split.",
        table(head, rows),
    ]
    figures = [("weighting_digits.png", "weighting on digits")]
    return harness.page(result, TITLE, body, verdicts, figures=figures, summary=summary)


def plot(result: Result, path: Path) -> None:
    raw, s, floor = result["raw"], result["summary"], result["raw"]["real_data_floor"]
    with harness.figure(path, 1, 2, figsize=(11, 4.2)) as (fig, (ax0, ax1)):
        harness.errorbars(ax0, SAMPLER_STEPS, s, "ddim{}/eval/fid")
        harness.errorbars(ax1, range(len(CENTRES)), s, "denoise_err/bin{}", at=CENTRES)
        ax0.axhline(floor["eval/fid"], color="k", ls="--", lw=1, label=f"real data, n={floor['n']}")
        harness.steps_axis(ax0, SAMPLER_STEPS, xlabel="DDIM steps", ylabel="FID (digits CNN), 1000 samples vs test")  # fmt: skip
        ax0.legend(fontsize=7)
        ax1.set(yscale="log", xlabel="log-SNR λ (bin centre)", ylabel="held-out mean ‖x̂0 − x0‖² per image")  # fmt: skip
        fig.suptitle(f"digits, mean ± std over {len(raw['seeds'])} seeds", fontsize=10)


def measure(args: Args) -> None:
    base = {"data": "digits", "train.steps": args.steps, "train.batch": args.batch, "train.threads": 1,
            "eval.samples": args.samples, "eval.every": args.steps}  # fmt: skip
    extra = {"samples": args.samples, "bins": BINS.tolist(), "sampler_steps": SAMPLER_STEPS}
    run = lambda c: run_one(c, args.samples, fid_of, denoise_error_by_bin, SAMPLER_STEPS)  # noqa: E731
    runs = harness.cached_runs(args, base, ARMS, extra, run,
                               lambda r: "FID@10/25/100 " + "/".join(f"{r['sampling'][str(k)]['eval/fid']:.3f}" for k in SAMPLER_STEPS))  # fmt: skip
    raw = {"config": base, "seeds": args.seeds, "bins": BINS.tolist(), "sampler_steps": list(SAMPLER_STEPS),
           "note": "time/* measured on a shared 2-core machine under load from other jobs",
           "per_seed": runs, "real_data_floor": real_floor(args.samples)}  # fmt: skip
    arms = {a: ARMS[a] for a in args.arms}
    harness.finish(args, harness.new(args, arms, raw, env="OMP_NUM_THREADS=1 "), summarise, plot)


if __name__ == "__main__":
    smoke = {"seeds": [0], "steps": 5, "samples": 50, "arms": ["constant", "debiased"]}
    harness.main(NAME, __doc__, summarise, measure, smoke, arms=ARMS, threads=1, seeds=[0, 1, 2],
                 steps=1500, cache=True, batch=128, samples=1000)  # fmt: skip
