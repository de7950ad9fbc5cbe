"""TIW-DSM on digits_biased: do the class proportions of samples move toward uniform, at what FID?

digits_biased (tuner/data/presets.py) keeps every train image of classes 0–4 and 20 % of classes 5–9
(≈ 810 images, minority share ≈ 1/6), with a class-uniform reference set of 80 images; the test
split (450 images) is class-uniform. For each seed one ConvDiscriminator is pre-trained exactly
as the trainer's prepare() would (tuner's TIW pre-training, same seed, stream and density) and
shared by the five arms, which differ only in the loss (METHODS.md §3):

- plain (a=0): denoising of the observed data;
- full a=0.5: weight r^0.5, ε-target correction 0.5·σ∇ₓlog r;
- TIW-DSM (a=1): weight r, correction σ∇ₓlog r;
- weight only (a=1) and correction only (a=1): the paper's ablation.

Each arm trains with tuner.training.trainer.Trainer (default UNet, cosine q(λ), the same steps, batch and
per-step draws) and is scored as the trainer reports it (Trainer.evaluate: eval.samples DDIM-50
samples, tuner.evaluation.metrics.image_metrics with the digits CNN against the test split): eval/fid,
eval/kid, eval/mode_error (total variation between the CNN's class fractions on the samples and
on the test split), eval/minority_fraction (CNN share of classes 5–9) and eval/minority_error.
The per-class fractions come from the same CNN (tuner.evaluation.metrics.digit_class_fractions).

For scale, the same metrics of real images: the observed (biased) set itself, and as many images
drawn at random from the whole (class-uniform) digits train split. The discriminator is checked
where its target is known: at λ = 8 (nearly clean) log r of an observed class-c image should be
log(p_ref(c)/p_obs(c)) (≈ −0.5 for classes 0–4, ≈ +1.1 for 5–9), and E_obs[r] = 1 at every λ.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tiw_digits.py   # writes bench/results/tiw_digits.*
    .venv/bin/python bench/tiw_digits.py --smoke    # a minute, to a temporary folder
    .venv/bin/python bench/tiw_digits.py --resummarise    # summary and verdicts again

Each (arm, seed) result and each seed's discriminator are cached under --cache, keyed by their
full configuration.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import harness
import torch
from harness import Result, compare, exceeds, pm, verdict
from weighting_ring import paired, spread

from models.param import add_noise
from models.schedules import alpha_sigma
from tuner.config.build import build_dataset, build_objective
from tuner.config.spec import resolve
from tuner.config.terms import discriminator_for
from tuner.data.presets import load_dataset
from tuner.evaluation.metrics import (
    default_extractor,
    digit_class_fractions,
    image_metrics,
    to_uint8,
)
from tuner.stats import mean_std
from tuner.training.trainer import Trainer

NAME = "tiw_digits"
NOTE = "time/* measured on a shared 2-core machine under load from other jobs"
ARMS: dict[str, dict[str, Any]] = {
    "plain (a=0)": {"tiw.strength": 0.0},
    "full a=0.5": {"tiw.strength": 0.5, "tiw.mode": "full"},
    "TIW-DSM (a=1)": {"tiw.strength": 1.0, "tiw.mode": "full"},
    "weight only (a=1)": {"tiw.strength": 1.0, "tiw.mode": "weight"},
    "correction only (a=1)": {"tiw.strength": 1.0, "tiw.mode": "correction"},
}
PLAIN = "plain (a=0)"
EVAL_KEYS = (
    "eval/fid",
    "eval/kid",
    "eval/mode_error",
    "eval/minority_fraction",
    "eval/minority_error",
)
CHECK_LOGSNR = (-4.0, 0.0, 4.0, 8.0)  # levels of the discriminator check
GRID = 64  # samples kept per run for the picture


def class_fractions(images: torch.Tensor) -> list[float]:
    """The digits CNN's class fractions of images in [-1, 1] (as image_metrics computes them)."""
    return digit_class_fractions(to_uint8(images)).tolist()


@torch.no_grad()
def discriminator_check(trainer: Trainer, draws: int = 8) -> dict[str, float]:
    """The discriminator's log r on observed images where the target is known (see docstring)."""
    ds, tiw = trainer.dataset, trainer.objective.tiw
    labels = ds.labels_train
    p_obs = torch.bincount(labels, minlength=10).double() / len(labels)
    p_ref = torch.bincount(ds.labels_reference, minlength=10).double() / len(ds.labels_reference)
    exact = (p_ref / p_obs).log()[labels]
    minority = torch.isin(labels, torch.tensor(ds.minority))
    g = torch.Generator().manual_seed(12345)
    out = {
        "ratio/exact_clean_logr_majority": float(exact[~minority].mean()),
        "ratio/exact_clean_logr_minority": float(exact[minority].mean()),
    }
    x0 = ds.train.repeat(draws, 1, 1, 1)
    mino = minority.repeat(draws)
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
        x.requires_grad_(True)
        log_r = tiw.log_ratio(x, lam)
        grad = torch.autograd.grad(log_r.sum(), x)[0]
    r = log_r.detach().exp()
    sigma = alpha_sigma(lam)[1][:, None, None, None]
    out["ratio/mean_r@q"] = float(r.mean())
    out["ratio/ess_fraction@q"] = float(r.mean().square() / r.square().mean())
    out["ratio/corr_norm@q"] = float((sigma * grad).flatten(1).norm(dim=1).mean())
    return out


def discriminator(
    cache: Path | None, base: dict[str, Any], seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """One seed's pre-trained discriminator (state, metrics), cached as a .pt file."""
    config = base | {"seed": seed, "tiw.strength": 1.0}
    file = (
        None if cache is None else cache / f"disc-{harness.cache_key(config, {'what': 'disc'})}.pt"
    )
    if file is not None and file.exists():
        saved = torch.load(file, weights_only=True)
        return saved["state"], json.loads(saved["metrics"])
    trainer = Trainer(config)
    t0 = time.perf_counter()
    metrics = trainer.prepare() | {"time/prepare_s": time.perf_counter() - t0}
    metrics |= discriminator_check(trainer)
    state = trainer.objective.tiw.disc.state_dict()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": state, "metrics": json.dumps(metrics)}, file)
    return state, metrics


def run_arm(config: dict[str, Any], disc_state: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    config = resolve(config)
    dataset = build_dataset(config)
    disc = None
    if disc_state is not None:  # the seed's shared discriminator, injected as trained
        disc = discriminator_for(dataset)
        disc.load_state_dict(disc_state)
    objective = build_objective(config, dataset, disc=disc)
    trainer = Trainer(config, dataset=dataset, objective=objective)
    t0 = time.perf_counter()
    losses: list[float] = []
    while trainer.step < config["train.steps"]:
        losses.append(trainer.train_step()["loss/total"])
    train_s = time.perf_counter() - t0
    metrics = trainer.evaluate()
    tail = losses[-max(1, len(losses) // 10) :]
    return {k: metrics[k] for k in EVAL_KEYS} | {
        "class_fractions": class_fractions(trainer.last_samples),
        "loss/total_last10pct": sum(tail) / len(tail),
        "time/train_s": train_s,
        "time/eval_s": metrics["time/eval_s"],
        "samples": trainer.last_samples[:GRID].tolist(),
    }


def real_data(seed: int) -> dict[str, dict[str, Any]]:
    """The metrics of real images: the observed set, and as many from the whole train split."""
    ds, full = load_dataset("digits_biased", seed=seed), load_dataset("digits")
    n = len(ds.train)
    idx = torch.randperm(len(full.train), generator=torch.Generator().manual_seed(seed))[:n]
    out = {}
    for name, x in (("observed (biased)", ds.train), ("uniform train subset", full.train[idx])):
        m = image_metrics(
            x, "digits_biased", ds.test, default_extractor("digits"), minority=ds.minority
        )
        out[name] = m | {"class_fractions": class_fractions(x), "n": n}
    return out


def unbiased_reference() -> dict[str, Any]:
    """Class fractions of the test split: true labels and the CNN's (what eval/* compares to)."""
    ds = load_dataset("digits_biased")
    minority = list(ds.minority)
    true = (torch.bincount(ds.labels_test, minlength=10).float() / len(ds.labels_test)).tolist()
    cnn = class_fractions(ds.test)
    return {
        "true_class_fractions": true,
        "cnn_class_fractions": cnn,
        "true_minority_fraction": sum(true[c] for c in minority),
        "cnn_minority_fraction": sum(cnn[c] for c in minority),
        "n": len(ds.test),
    }


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rows[0].items():
        if k in ("samples", "seed"):
            continue
        if isinstance(v, list):
            cols = [spread(list(c)) for c in zip(*(r[k] for r in rows), strict=True)]
            out[k] = {"mean": [c["mean"] for c in cols], "std": [c["std"] for c in cols]}
        else:
            out[k] = spread([r[k] for r in rows])
    return out


def summarise(result: Result) -> Result:
    """Mean ± std over seeds of the arms, the real images and the discriminators; paired
    differences against plain denoising; the verdicts."""
    per_seed = result["per_seed"]
    runs, discs = per_seed["arms"], per_seed["discriminator"]
    summary: dict[str, Any] = {}
    for arm, rows in runs.items():
        summary[arm] = summarise_rows(rows)
        if arm != PLAIN and PLAIN in runs:
            summary[arm]["vs_plain"] = {
                k: paired([r[k] for r in rows], [r[k] for r in runs[PLAIN]]) for k in EVAL_KEYS
            }
    real = per_seed["real_data"]
    result["real_data"] = {name: summarise_rows(rows) for name, rows in real.items()}
    result["discriminator"] = summarise_rows([{k: v for k, v in d.items() if k != "seed"} for d in discs])  # fmt: skip
    result["summary"] = summary
    result["note"] = NOTE
    result["verdicts"] = verdicts(result)
    return result


def verdicts(result: Result) -> list[dict[str, Any]]:
    """The claims of the TIW-DSM paper on digits, and of this benchmark's reading, computed."""
    runs, unbiased = result["per_seed"]["arms"], result["unbiased"]

    def col(key: str) -> dict[str, list[float]]:
        return {arm: [r[key] for r in rows] for arm, rows in runs.items()}

    half, full, weight, corr = list(ARMS)[1:]
    share, fid = col("eval/minority_fraction"), col("eval/fid")
    obs = result["real_data"]["observed (biased)"]["eval/minority_fraction"]["mean"]
    holds, text = exceeds(share[PLAIN], obs)
    out = [
        verdict(
            "Plain denoising sharpens the observed bias: its samples' minority share is below "
            "the observed set's own",
            None if holds is None else not holds,
            f"plain {text} (95 % t); the observed set {obs:.3f}",
        )
    ]
    claims = [
        (f"{full} raises the minority share over plain denoising's", share, [(full, PLAIN)], "max"),
        (f"{full} brings the class proportions closer to the test split's than plain denoising",
         col("eval/mode_error"), [(full, PLAIN)], "min"),
        (f"{full} lowers the FID against the class-uniform test split below plain denoising's",
         fid, [(full, PLAIN)], "min"),
        (f"Half strength ({half}) lands between plain denoising and {full} in minority share",
         share, [(half, PLAIN), (full, half)], "max"),
        (f"The weight alone ({weight}) raises the minority share over plain denoising's", share,
         [(weight, PLAIN)], "max"),
    ]  # fmt: skip
    for claim, columns, pairs, mode in claims:
        out.append(verdict(claim, *compare(columns, pairs, mode)))
    holds, ev = compare(share, [(corr, PLAIN)], "max")
    holds_fid, ev_fid = compare(fid, [(corr, PLAIN)], "min")
    claim = f"The correction alone ({corr}) raises the minority share and lowers the FID below "
    out.append(verdict(claim + "plain denoising's", harness.every([holds, holds_fid]),
                       f"minority share: {ev}; FID: {ev_fid}"))  # fmt: skip
    test = unbiased["cnn_minority_fraction"]
    holds, text = exceeds(share[full], test)
    out.append(
        verdict(
            f"The shift is partial: {full}'s minority share stays below the test split's",
            None if holds is None else not holds,
            f"{full} {text} (95 % t); the test split {test:.3f} (CNN; true labels "
            f"{unbiased['true_minority_fraction']:.3f})",
        )
    )
    discs = result["per_seed"]["discriminator"]
    logr = [d["ratio/logr_minority@8"] for d in discs]
    exact = statistics.mean(d["ratio/exact_clean_logr_minority"] for d in discs)
    major = statistics.mean(d["ratio/logr_majority@8"] for d in discs)
    exact_major = statistics.mean(d["ratio/exact_clean_logr_majority"] for d in discs)
    holds, text = exceeds(logr, exact)
    out.append(
        verdict(
            "The discriminator, trained on a small reference set, underestimates the minority "
            "classes' log-ratio at λ = 8",
            None if holds is None else not holds,
            f"log r of minority images {text} (95 % t) against the exact {exact:.2f}: "
            f"{100 * statistics.mean(logr) / exact:.0f} % of it (majority images "
            f"{pm(*mean_std([d['ratio/logr_majority@8'] for d in discs]))}, "
            f"{100 * major / exact_major:.0f} % of the exact {exact_major:.2f})",
        )
    )
    return out


def plot(
    runs: dict[str, list[dict]],
    summary: dict[str, Any],
    real: dict[str, Any],
    unbiased: dict[str, Any],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    names = list(runs)
    n_seeds = len(runs[names[0]])
    fig = plt.figure(figsize=(17, 8.6))
    top = fig.add_gridspec(2, 3, height_ratios=(1.15, 1.0), top=0.93, bottom=0.05)
    ax_cls, ax_min, ax_fid = (fig.add_subplot(top[0, i]) for i in range(3))
    bottom = top[1, :].subgridspec(1, len(names))
    width = 0.8 / len(names)
    classes = torch.arange(10).float()
    for i, n in enumerate(names):
        s = summary[n]["class_fractions"]
        ax_cls.bar(
            classes + (i - len(names) / 2 + 0.5) * width,
            s["mean"],
            width,
            yerr=s["std"],
            capsize=1.5,
            label=n,
        )
    ax_cls.plot(classes, unbiased["cnn_class_fractions"], "k_", ms=14, mew=2, label="test (CNN)")
    obs = summary_real(real)["observed (biased)"]["class_fractions"]["mean"]
    ax_cls.plot(classes, obs, "_", color="tab:red", ms=14, mew=2, label="observed set (CNN)")
    ax_cls.set_xticks(classes.tolist(), [str(c) for c in range(10)])
    ax_cls.set_xlabel("class (digits CNN)")
    ax_cls.set_ylabel("fraction of samples")
    ax_cls.legend(fontsize=6, ncol=2)
    real_s = summary_real(real)
    for ax, key, label in (
        (ax_min, "eval/minority_fraction", "CNN share of classes 5–9"),
        (ax_fid, "eval/fid", "FID (digits CNN) vs test"),
    ):
        ax.bar(
            range(len(names)),
            [summary[n][key]["mean"] for n in names],
            yerr=[summary[n][key]["std"] for n in names],
            capsize=4,
            color="0.75",
        )
        for i, n in enumerate(names):
            ax.scatter([i] * n_seeds, [r[key] for r in runs[n]], color="k", s=10, zorder=3)
        for (rn, rs), color in zip(real_s.items(), ("tab:red", "tab:green"), strict=True):
            ax.axhline(rs[key]["mean"], color=color, ls="--", lw=1, label=f"real: {rn}")
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    ax_min.axhline(unbiased["cnn_minority_fraction"], color="k", ls=":", lw=1, label="test (CNN)")
    ax_min.legend(fontsize=7)
    for i, n in enumerate(names):
        ax = fig.add_subplot(bottom[0, i])
        x = torch.tensor(runs[n][0]["samples"]).clamp(-1, 1).add(1).div(2)
        grid = make_grid(x.repeat_interleave(4, -1).repeat_interleave(4, -2), nrow=8, pad_value=1)
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_title(f"{n}, seed {runs[n][0]['seed']}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"digits_biased, TIW-DSM arms: mean ± std over {n_seeds} seeds (dots: seeds)")
    fig.savefig(path, dpi=110)


def summary_real(real: dict[str, list[dict]]) -> dict[str, Any]:
    return {name: summarise_rows(rows) for name, rows in real.items()}


def main() -> None:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2], steps=1500, cache=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=1000, help="samples per evaluation")
    parser.add_argument("--disc-steps", type=int, default=1500, help="tiw.disc_steps (max)")
    args = parser.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    torch.set_num_threads(1)
    if args.smoke:
        args.seeds, args.steps, args.samples, args.disc_steps = [0], 10, 100, 30
    cache = harness.cache_dir(args)
    base = {
        "data": "digits_biased",
        "train.steps": args.steps,
        "train.batch": args.batch,
        "train.threads": 1,
        "eval.samples": args.samples,
        "eval.every": args.steps,
        "tiw.disc_steps": args.disc_steps,
    }
    extra = {"what": NAME, "grid": GRID}
    t0 = time.perf_counter()
    discs: dict[int, tuple[dict[str, torch.Tensor], dict[str, float]]] = {}

    def shared(seed: int) -> dict[str, torch.Tensor]:  # trained on first need, cached
        if seed not in discs:
            discs[seed] = discriminator(cache, base, seed)
        return discs[seed][0]

    def run(arm: str, seed: int) -> Result:
        config = base | ARMS[arm] | {"seed": seed}
        tiw = ARMS[arm]["tiw.strength"] > 0
        fn = lambda: run_arm(config, shared(seed) if tiw else None)  # noqa: E731
        r = harness.cached(cache, config, extra, fn)
        print(
            f"seed {seed} {arm:22s} minority {r['eval/minority_fraction']:.3f} "
            f"mode_err {r['eval/mode_error']:.3f} FID {r['eval/fid']:.3f} "
            f"({r['time/train_s']:.0f}s train, {r['time/eval_s']:.0f}s eval)",
            flush=True,
        )
        return r | {"seed": seed}

    runs = harness.arm_seed_loop(ARMS, args.seeds, run)
    real: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:
        shared(seed)  # the discriminator's metrics, also when every arm was cached
        print(f"seed {seed} discriminator {json.dumps(discs[seed][1])}", flush=True)
        for name, m in real_data(seed).items():
            real.setdefault(name, []).append(m | {"seed": seed})
    print(f"total {time.perf_counter() - t0:.0f}s")
    result = {
        "command": harness.command(args, env="OMP_NUM_THREADS=1 "),
        "config": base,
        "arms": ARMS,
        "seeds": args.seeds,
        "note": NOTE,
        "unbiased": unbiased_reference(),
        "per_seed": {
            "arms": {
                a: [{k: v for k, v in r.items() if k != "samples"} for r in rs]
                for a, rs in runs.items()
            },
            "discriminator": [discs[seed][1] | {"seed": seed} for seed in args.seeds],
            "real_data": real,
        },
    }
    result = harness.finish(args, result, summarise)
    path = harness.out_path(args).with_suffix(".png")
    plot(runs, result["summary"], real, result["unbiased"], path)


if __name__ == "__main__":
    main()
