"""TIW-DSM on digits_biased: do the class proportions of samples move toward uniform, at what FID?

digits_biased: every train image of classes 0–4 and 20 % of classes 5–9, a class-uniform
reference set of 80 images and a class-uniform test split. Per seed one ConvDiscriminator is
pre-trained and injected into the five arms of bench/tiw_bimodal.py (METHODS.md §3), each scored
as the trainer reports it (FID, KID, class-fraction TV error, minority share) beside real images.
The discriminator is checked where its target is known: at λ = 8, log r of an observed class-c
image is log(p_ref(c)/p_obs(c)), and E_obs[r] = 1. Runs and discriminators are cached.
"""

import functools
import statistics
from pathlib import Path
from typing import Any

import claims
import harness
import torch
from harness import Args, Result

from models.param import add_noise
from models.schedules import alpha_sigma
from tuner.data.presets import load_dataset
from tuner.evaluation import metrics
from tuner.training.trainer import Trainer

NAME = "tiw_digits"
TITLE = "TIW-DSM on biased digits"
NOTE = "time/* measured on a shared 2-core machine under load from other jobs"
ARMS: dict[str, dict[str, Any]] = {
    "plain (a=0)": {"tiw.strength": 0.0},
    "full a=0.5": {"tiw.strength": 0.5, "tiw.mode": "full"},
    "TIW-DSM (a=1)": {"tiw.strength": 1.0, "tiw.mode": "full"},
    "weight only (a=1)": {"tiw.strength": 1.0, "tiw.mode": "weight"},
    "correction only (a=1)": {"tiw.strength": 1.0, "tiw.mode": "correction"},
}
PLAIN, HALF, FULL, WEIGHT, CORR = ARMS
SHARE = "eval/minority_fraction"
CLAIMS = [
    (f"{FULL} raises the minority share over plain denoising's", SHARE, [(FULL, PLAIN)], "max"),
    (f"{FULL} brings the class proportions closer to the test split's than plain denoising", "eval/mode_error", [(FULL, PLAIN)], "min"),
    (f"{FULL} lowers the FID against the class-uniform test split below plain denoising's", "eval/fid", [(FULL, PLAIN)], "min"),
    (f"Half strength ({HALF}) lands between plain denoising and {FULL} in minority share", SHARE, [(HALF, PLAIN), (FULL, HALF)], "max"),
    (f"The weight alone ({WEIGHT}) raises the minority share over plain denoising's", SHARE, [(WEIGHT, PLAIN)], "max"),
]  # fmt: skip
EVAL_KEYS = ("eval/fid", "eval/kid", "eval/mode_error", "eval/minority_fraction", "eval/minority_error")  # fmt: skip
CHECK_LOGSNR = (-4.0, 0.0, 4.0, 8.0)  # levels of the discriminator check
GRID = 64  # samples kept per run for the picture


def class_fractions(images: torch.Tensor) -> list[float]:
    """The digits CNN's class fractions of images in [-1, 1] (as image_metrics computes them)."""
    return metrics.digit_class_fractions(metrics.to_uint8(images)).tolist()


@torch.no_grad()
def discriminator_check(trainer: Trainer, draws: int = 8) -> dict[str, float]:
    """The discriminator's log r on observed images where the target is known (see docstring)."""
    ds, tiw, labels, g = trainer.dataset, trainer.objective.tiw, trainer.dataset.labels_train, torch.Generator().manual_seed(12345)  # fmt: skip
    p_obs, p_ref = (torch.bincount(y, minlength=10).double() / len(y) for y in (labels, ds.labels_reference))  # fmt: skip
    exact, minority = (p_ref / p_obs).log()[labels], torch.isin(labels, torch.tensor(ds.minority))
    out = {"ratio/exact_clean_logr_majority": float(exact[~minority].mean()),
           "ratio/exact_clean_logr_minority": float(exact[minority].mean())}  # fmt: skip
    x0, mino = ds.train.repeat(draws, 1, 1, 1), minority.repeat(draws)
    for lam in CHECK_LOGSNR:
        logsnr = torch.full((len(x0),), lam)
        log_r = tiw.log_ratio(add_noise(x0, torch.randn(x0.shape, generator=g), logsnr), logsnr)
        out[f"ratio/logr_majority@{lam:g}"] = float(log_r[~mino].mean())
        out[f"ratio/logr_minority@{lam:g}"] = float(log_r[mino].mean())
        out[f"ratio/mean_r@{lam:g}"] = float(log_r.exp().mean())  # exact: 1
    # over the training noise levels: E_obs[r], the weights' effective-sample fraction and the
    # size of the ε-target correction σ∇ₓlog r against that of ε (√64 = 8)
    lam = trainer.density.sample(len(x0), g)
    x = add_noise(x0, torch.randn(x0.shape, generator=g), lam)
    with torch.enable_grad():
        log_r = tiw.log_ratio(x.requires_grad_(True), lam)
        grad = torch.autograd.grad(log_r.sum(), x)[0]
    r, sigma = log_r.detach().exp(), alpha_sigma(lam)[1][:, None, None, None]
    out["ratio/mean_r@q"] = float(r.mean())
    out["ratio/ess_fraction@q"] = float(r.mean().square() / r.square().mean())
    out["ratio/corr_norm@q"] = float((sigma * grad).flatten(1).norm(dim=1).mean())
    return out


def run_arm(config: dict[str, Any], disc: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    """One arm, with the seed's shared discriminator injected, scored as the trainer reports it."""
    trainer, info = harness.train(config, **harness.components(config, disc=disc))
    m, images = trainer.evaluate(), trainer.last_samples
    return {k: m[k] for k in EVAL_KEYS} | {"class_fractions": class_fractions(images),
            "loss/total_last10pct": info["loss/total_last10pct"], "time/train_s": info["time/train_s"],
            "time/eval_s": m["time/eval_s"], "samples": images[:GRID].tolist()}  # fmt: skip


def real_data(seed: int) -> dict[str, dict[str, Any]]:
    """The metrics of real images: the observed set, and as many from the whole train split."""
    ds, full = load_dataset("digits_biased", seed=seed), load_dataset("digits")
    n = len(ds.train)
    idx = torch.randperm(len(full.train), generator=torch.Generator().manual_seed(seed))[:n]
    return {name: metrics.image_metrics(x, "digits_biased", ds.test, metrics.default_extractor("digits"), minority=ds.minority)
            | {"class_fractions": class_fractions(x), "n": n}
            for name, x in (("observed (biased)", ds.train), ("uniform train subset", full.train[idx]))}  # fmt: skip


def unbiased_reference() -> dict[str, Any]:
    """Class fractions of the test split: true labels and the CNN's (what eval/* compares to)."""
    ds = load_dataset("digits_biased")
    true = (torch.bincount(ds.labels_test, minlength=10).float() / len(ds.labels_test)).tolist()
    cnn = class_fractions(ds.test)
    return {"true_class_fractions": true, "cnn_class_fractions": cnn, "true_minority_fraction": sum(true[i] for i in ds.minority),
            "cnn_minority_fraction": sum(cnn[i] for i in ds.minority), "n": len(ds.test)}  # fmt: skip


def summarise(result: Result) -> Result:
    raw, sd = result["raw"], claims.sd
    s = {name: claims.summarise_arms(raw[key], skip=["seed"]) for name, key in (("arms", "runs"), ("real_data", "real_data"))}  # fmt: skip
    s["discriminator"] = claims.summarise_arms({"d": raw["discriminator"]}, skip=["seed"])["d"]
    c, disc, unb = raw["config"], s["discriminator"], raw["unbiased"]
    keys = ("eval/minority_fraction", "eval/mode_error", "eval/fid", "eval/kid")
    rows = [[arm] + [sd(v[k]) for k in keys] for arm, v in s["arms"].items()]
    rows += [[f"real: {name} (N = {v['n']['mean']:.0f})"] + [sd(v[k]) for k in keys] for name, v in s["real_data"].items()]  # fmt: skip
    body = [
        f"`{result['command'].strip()}` — digits_biased (all train images of classes 0–4, 20 % of classes 5–9; a class-uniform "
        f"reference set), {c['train.steps']} steps of batch {c['train.batch']}, seeds {raw['seeds']}, one discriminator per seed "
        f"shared by the arms (early-stopped after {sd(disc['ratio/steps'], 2)} steps). Samples ({c['eval.samples']}, DDIM-50) are "
        f"classified by the digits CNN; the test split's CNN minority share is {unb['cnn_minority_fraction']:.3f} (true labels "
        f"{unb['true_minority_fraction']:.3f}). The discriminator at λ = 8, where the target is the class ratio: log r of majority "
        f"images {sd(disc['ratio/logr_majority@8'], 2)} (exact {disc['ratio/exact_clean_logr_majority']['mean']:.2f}), of "
        f"minority images {sd(disc['ratio/logr_minority@8'], 2)} (exact {disc['ratio/exact_clean_logr_minority']['mean']:.2f}); "
        f"E_obs[r] over q(λ) {sd(disc['ratio/mean_r@q'], 2)} (exact 1).",
        claims.table(["arm", "minority share (classes 5–9)", "class-proportion TV error", "FID", "KID"], rows),
    ]  # fmt: skip
    return harness.page(result, TITLE, body, verdicts(raw, s), summary=s,
                        figures=[("tiw_digits.png", "TIW on digits_biased")])  # fmt: skip


def verdicts(raw: Result, s: dict[str, Any]) -> list[dict[str, Any]]:
    runs, unbiased, discs, verdict = raw["runs"], raw["unbiased"], raw["discriminator"], claims.verdict  # fmt: skip
    share, fid = claims.column(runs, SHARE), claims.column(runs, "eval/fid")
    obs = s["real_data"]["observed (biased)"][SHARE]["mean"]
    holds, text = claims.exceeds(share[PLAIN], obs)
    out = [verdict("Plain denoising sharpens the observed bias: its samples' minority share is below the observed set's own",
                   claims.negate(holds), f"plain {text} (95 % t); the observed set {obs:.3f}"), *claims.judge(runs, CLAIMS)]  # fmt: skip
    (holds, ev), (holds_fid, ev_fid) = claims.compare(share, [(CORR, PLAIN)], "max"), claims.compare(fid, [(CORR, PLAIN)], "min")  # fmt: skip
    out.append(verdict(f"The correction alone ({CORR}) raises the minority share and lowers the FID below plain denoising's",
                       claims.every([holds, holds_fid]), f"minority share: {ev}; FID: {ev_fid}"))  # fmt: skip
    test = unbiased["cnn_minority_fraction"]
    holds, text = claims.exceeds(share[FULL], test)
    out.append(verdict(f"The shift is partial: {FULL}'s minority share stays below the test split's", claims.negate(holds),
                       f"{FULL} {text} (95 % t); the test split {test:.3f} (CNN; true labels {unbiased['true_minority_fraction']:.3f})"))  # fmt: skip
    logr, major = ([d[f"ratio/logr_{k}@8"] for d in discs] for k in ("minority", "majority"))
    exact, exact_major = (statistics.mean(d[f"ratio/exact_clean_logr_{k}"] for d in discs) for k in ("minority", "majority"))  # fmt: skip
    holds, text = claims.exceeds(logr, exact)
    out.append(verdict(
        "The discriminator, trained on a small reference set, underestimates the minority classes' log-ratio at λ = 8",
        claims.negate(holds),
        f"log r of minority images {text} (95 % t) against the exact {exact:.2f}: {100 * statistics.mean(logr) / exact:.0f} % of it "
        f"(majority images {claims.pm(*claims.mean_std(major))}, {100 * statistics.mean(major) / exact_major:.0f} % of the exact {exact_major:.2f})"))  # fmt: skip
    return out


def plot(result: Result, path: Path, samples: dict[str, list]) -> None:
    """Class fractions, minority share and FID per arm (mean ± std; dots: seeds) against the real
    images, and a grid of each arm's first-seed samples."""
    from torchvision.utils import make_grid  # for the figure only

    raw, s, unbiased = result["raw"], result["summary"], result["raw"]["unbiased"]
    names, fig = list(raw["runs"]), harness.pyplot().figure(figsize=(17, 8.6))
    top = fig.add_gridspec(2, 3, height_ratios=(1.15, 1.0), top=0.93, bottom=0.05)
    ax_cls, ax_min, ax_fid = (fig.add_subplot(top[0, i]) for i in range(3))
    classes, width, obs = torch.arange(10).float(), 0.8 / len(names), s["real_data"]["observed (biased)"]["class_fractions"]  # fmt: skip
    for i, n in enumerate(names):
        f = s["arms"][n]["class_fractions"]
        ax_cls.bar(classes + (i - len(names) / 2 + 0.5) * width, f["mean"], width, yerr=f["std"], capsize=1.5, label=n)  # fmt: skip
    ax_cls.plot(classes, unbiased["cnn_class_fractions"], "k_", ms=14, mew=2, label="test (CNN)")
    ax_cls.plot(classes, obs["mean"], "_", color="tab:red", ms=14, mew=2, label="observed set (CNN)")  # fmt: skip
    ax_cls.set_xticks(classes.tolist(), [str(c) for c in range(10)])
    ax_cls.set(xlabel="class (digits CNN)", ylabel="fraction of samples")
    ax_cls.legend(fontsize=6, ncol=2)
    for ax, key, label in ((ax_min, SHARE, "CNN share of classes 5–9"), (ax_fid, "eval/fid", "FID (digits CNN) vs test")):  # fmt: skip
        harness.bars(ax, s["arms"], raw["runs"], key)
        for (rn, rs), color in zip(s["real_data"].items(), ("tab:red", "tab:green"), strict=True):
            ax.axhline(rs[key]["mean"], color=color, ls="--", lw=1, label=f"real: {rn}")
        if ax is ax_min:
            ax.axhline(unbiased["cnn_minority_fraction"], color="k", ls=":", lw=1, label="test (CNN)")  # fmt: skip
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    for i, (n, images) in enumerate(samples.items()):  # each arm's first-seed samples, 4× enlarged
        ax = fig.add_subplot(top[1, :].subgridspec(1, len(names))[0, i])
        x = torch.tensor(images).clamp(-1, 1).add(1).div(2).repeat_interleave(4, -1).repeat_interleave(4, -2)  # fmt: skip
        ax.imshow(make_grid(x, nrow=8, pad_value=1).permute(1, 2, 0).numpy())
        ax.set_title(f"{n}, seed {raw['seeds'][0]}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"digits_biased, TIW-DSM arms: mean ± std over {len(raw['seeds'])} seeds (dots: seeds)")  # fmt: skip
    fig.savefig(path, dpi=110)


def measure(args: Args) -> None:
    base = {"data": "digits_biased", "train.steps": args.steps, "train.batch": args.batch, "train.threads": 1,
            "eval.samples": args.samples, "eval.every": args.steps, "tiw.disc_steps": args.disc_steps}  # fmt: skip
    cache = harness.cache_dir(args)  # one discriminator per seed, shared by the arms, cached
    disc = functools.cache(lambda seed: harness.shared_discriminator(base | {"seed": seed}, discriminator_check, cache))  # fmt: skip
    runs = harness.cached_runs(args, base, ARMS, {"what": NAME, "grid": GRID},
                               lambda c: run_arm(c, disc(c["seed"])[0] if c["tiw.strength"] > 0 else None),
                               lambda r: f"minority {r[SHARE]:.3f} FID {r['eval/fid']:.3f}")  # fmt: skip
    samples = harness.first_samples(runs)
    runs = {arm: [r | {"seed": seed} for r, seed in zip(rows, args.seeds, strict=True)] for arm, rows in runs.items()}  # fmt: skip
    per_seed = [{name: m | {"seed": seed} for name, m in real_data(seed).items()} for seed in args.seeds]  # fmt: skip
    real = {name: [r[name] for r in per_seed] for name in per_seed[0]}
    raw = {"config": base, "seeds": args.seeds, "note": NOTE, "unbiased": unbiased_reference(), "runs": runs,
           "discriminator": [disc(seed)[1] | {"seed": seed} for seed in args.seeds], "real_data": real}  # fmt: skip
    result = harness.new(args, ARMS, raw, env="OMP_NUM_THREADS=1 ")
    harness.finish(args, result, summarise, lambda r, path: plot(r, path, samples))


if __name__ == "__main__":
    smoke = {"seeds": [0], "steps": 10, "samples": 100, "disc_steps": 30}
    harness.main(NAME, __doc__, summarise, measure, smoke, threads=1, seeds=[0, 1, 2], steps=1500,
                 cache=True, batch=128, samples=1000, disc_steps=1500)  # fmt: skip
