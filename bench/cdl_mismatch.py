"""CDL on ring8: does the contrastive term lower the denoiser's error at mismatched levels?

Every arm trains the same denoising term at a small budget; the CDL arms add coef ×
models.cdl.CDLLoss (its defaults, or the earlier estimator: 4 i.i.d. levels for a quarter of the
batch). Scored against the ring's exact ε* at mismatched queries (a sample of level λ queried at
λ' = mismatched_logsnr(λ, ζ), what CDL trains on) and at matched ones; by Picard sweeps and
few-step DDIM. One more arm trains plain denoising for the "cdl 0.1" arm's training CPU time.
On each plain model, the gradient norms of the denoising and CDL terms; with the exact denoiser,
the estimator's own noise and the bias of its logistic loss.
"""

import time
from pathlib import Path

import harness
import torch
import torch.nn.functional as F
from claims import arm_rows, ci, exceeds, judge, mean_std, pm, summarise_arms, table, verdict
from harness import Args, Result

from models.analytic import ring8
from models.cdl import CDLLoss, importance_density, mismatched_logsnr
from models.param import add_noise
from models.picard import sample_picard
from models.samplers import sample_ddim
from models.schedules import alpha_sigma, logsnr_grid
from tuner.data.presets import Dataset
from tuner.evaluation.metrics import lowdim_metrics
from tuner.stats import mean_interval
from tuner.training.trainer import Trainer

NAME = "cdl_mismatch"
TITLE = "Contrastive diffusion loss on the ring"
COLUMNS = [("eps_err/mismatched", 2), ("eps_err/matched", 2), ("picard/iterations", 3), ("ddim5/nll", 3), ("ddim10/nll", 3), ("ddim5/mmd", 2)]  # fmt: skip
EARLIER = {"mc_points": 4, "fraction": 0.25, "qmc": False, "levels_loc": "reference"}
EARLIER_ARM = "cdl 1.0, earlier estimator (M=4 i.i.d., fraction 0.25)"
# name: (cdl.coef, CDLLoss keywords)
ARMS: dict[str, tuple[float, dict]] = {
    "plain": (0.0, {}),
    "cdl 0.1": (0.1, {}),
    "cdl 1.0": (1.0, {}),
    EARLIER_ARM: (1.0, EARLIER),
}
EQUAL_TIME_OF = "cdl 0.1"
EQUAL_TIME = f"plain, wall-clock of {EQUAL_TIME_OF}"  # more steps, the same training time
PAPER = "Wu et al. 2024: CDL trains the denoiser off the training distribution"
MISMATCHED = "eps_err/mismatched"
CLAIMS = [
    *[(f"{arm} lowers the denoiser's error at mismatched levels below plain denoising's at equal steps ({PAPER})",
       MISMATCHED, [(arm, "plain")], "min") for arm in ("cdl 0.1", "cdl 1.0")],
    ("cdl 0.1 lowers the error at mismatched levels below plain denoising's given the same training time", MISMATCHED,
     [("cdl 0.1", EQUAL_TIME)], "min"),
    *[claim for arm in ("cdl 0.1", "cdl 1.0") for claim in (
        (f"{arm} needs fewer Picard sweeps than plain denoising (Wu et al. 2024)", "picard/iterations", [(arm, "plain")], "min"),
        (f"{arm} improves 5-step DDIM samples (NLL under the true mixture) over plain denoising (Wu et al. 2024: better "
         "few-step sampling)", "ddim5/nll", [(arm, "plain")], "min"))],
    ("cdl 1.0 with the new estimator has a lower mismatched-level error than with the earlier one (4 i.i.d. levels for a "
     "quarter of the batch)", MISMATCHED, [("cdl 1.0", EARLIER_ARM)], "min"),
]  # fmt: skip
LAMBDA_BINS = [(-6.0, -2.0), (-2.0, 2.0), (2.0, 6.0), (6.0, 12.0)]


def cdl_term(mean: torch.Tensor, cov: torch.Tensor, kwargs: dict, **bounds: float) -> CDLLoss:
    """The contrastive term from the class, with the reference of the data's moments (as
    tuner/config/terms.py makes it); levels_loc "reference" centres its levels there."""
    kw = dict(kwargs)
    if kw.get("levels_loc") == "reference":
        kw["levels_loc"] = importance_density(CDLLoss(mean, cov).ref.eigs, **bounds).loc
    return CDLLoss(mean, cov, **bounds, **kw)


def make_cdl(dataset: Dataset, c: dict, kwargs: dict) -> CDLLoss:
    """cdl_term of the training data, within the config's log-SNR bounds."""
    flat = dataset.train.flatten(1)
    return cdl_term(flat.mean(0), torch.cov(flat.T), kwargs, logsnr_min=c["noise.logsnr_min"], logsnr_max=c["noise.logsnr_max"])  # fmt: skip


@torch.no_grad()
def eps_errors(trainer: Trainer, n: int = 20000) -> dict[str, float]:
    truth, model = trainer.dataset.truth, trainer.ema.eval()
    cdl, g = make_cdl(trainer.dataset, trainer.config, {}), torch.Generator().manual_seed(777)
    q = importance_density(cdl.ref.eigs)  # the scoring levels: centred at the reference
    x0, lam = truth.sample(n, g), q.sample(n, g)
    lam_mis, eps = mismatched_logsnr(lam, cdl.zeta.sample(n, g)), torch.randn(x0.shape, generator=g)
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
    ds, model, info = trainer.dataset, trainer.ema.eval(), {}
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(99))
    xs = sample_picard(model, x, logsnr_grid("cosine", 50), tol=1e-3, info=info)
    out = {"picard/iterations": float(info["iterations"]), "picard/nll": lowdim_metrics(xs, ds.truth, ds.test, None)["eval/nll"]}  # fmt: skip
    for steps in (5, 10):
        m = lowdim_metrics(sample_ddim(model, x, logsnr_grid("cosine", steps)), ds.truth, ds.test, None)  # fmt: skip
        out[f"ddim{steps}/nll"], out[f"ddim{steps}/mmd"] = m["eval/nll"], m["eval/mmd"]
    return out


def gradient_scale(trainer: Trainer, batches: int = 20) -> dict[str, float]:
    """Norms of the gradient of the denoising term and of the CDL term (coefficient 1, the
    defaults and the earlier estimator) on the trained model: per batch (mean over batches)
    and of their mean over batches (the systematic part)."""
    model, data = trainer.model, trainer.dataset.train
    terms = {"denoise": trainer.objective.terms["denoise"], "cdl": make_cdl(trainer.dataset, trainer.config, {}),
             "cdl_earlier": make_cdl(trainer.dataset, trainer.config, EARLIER)}  # fmt: skip
    grads: dict[str, list[torch.Tensor]] = {k: [] for k in terms}
    for i in range(batches):
        for name, term in terms.items():
            g = torch.Generator().manual_seed(1000 + i)
            x0 = data[torch.randperm(len(data), generator=g)[: trainer.config["train.batch"]]]
            model.zero_grad(set_to_none=True)
            term(model, x0, g).mean().backward()
            grads[name].append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    stacks = {name: torch.stack(gs) for name, gs in grads.items()}
    return {k: v for name, g in stacks.items() for k, v in ((f"grad/{name}/per_batch", float(g.norm(dim=1).mean())), (f"grad/{name}/mean", float(g.mean(0).norm())))}  # fmt: skip


def run_arm(config: dict, steps: int, cdl: dict | None) -> dict[str, float]:
    """Train `steps` steps of `config` (with the class's CDL term built from `cdl` keywords
    when given, in place of the config's); its errors, sampling metrics, and times."""
    t0, config = time.perf_counter(), config | {"train.steps": steps, "eval.every": steps}
    term = None if cdl is None else lambda data, c: make_cdl(data, c, cdl | {"coef": c["cdl.coef"]})
    trainer, info = harness.train(config, **harness.components(config, term=term))
    out = eps_errors(trainer) | sampling(trainer)
    if cdl is None:  # plain denoising: how large would a CDL term's gradient be here?
        out |= gradient_scale(trainer)
    # train_s: CPU time of the one training thread, robust to other jobs
    return out | {"steps": float(steps), "train_s": info["time/train_cpu_s"], "time_s": time.perf_counter() - t0}  # fmt: skip


@torch.no_grad()
def estimator_noise(kwargs: dict, seed: int, n: int = 128, repeats: int = 40) -> dict[str, float]:
    """The logit estimator with the exact ring8 denoiser on one CDL batch (half clean, half
    ζ-noised, as CDLLoss draws it): per-example std over `repeats` draws (RMS over examples),
    the exact logit's spread (std over examples), and the mean upward bias of the logistic
    loss softplus(∓ℓ̂) against softplus(∓ℓ)."""
    gm, g, nc = ring8(), torch.Generator().manual_seed(seed), n // 2
    loss = cdl_term(gm.mean, gm.covariance, kwargs)
    x0, zeta, xi = gm.sample(n, g), loss.zeta.sample(n, g), torch.randn(n, 2, generator=g)
    a, s = (v[:, None] for v in alpha_sigma(zeta[nc:]))
    z = torch.cat([x0[:nc], a * x0[nc:] + s * xi[nc:]])
    noised = torch.stack([gm.log_prob(z[i : i + 1], float(zeta[i]))[0] for i in range(n)])
    exact = gm.log_prob(z) - noised
    est = torch.stack([loss.logit(gm.eps_star, z, zeta, g) for _ in range(repeats)])
    noise = est.std(0)
    sign = torch.cat([-torch.ones(nc), torch.ones(n - nc)])  # clean: softplus(−ℓ)
    bias = (F.softplus(sign * est).mean(0) - F.softplus(sign * exact)).mean()
    rms_clean, rms_all = noise[:nc].square().mean().sqrt(), noise.square().mean().sqrt()
    out = {"noise_clean": rms_clean, "spread_clean": exact[:nc].std(), "noise_all": rms_all, "spread_all": exact.std(),
           "ratio_clean": rms_clean / exact[:nc].std(), "ratio_all": rms_all / exact.std(), "loss_bias": bias,
           "mean_error": (est.mean(0) - exact).mean()}  # fmt: skip
    return {k: float(v) for k, v in out.items()}


def summarise(result: Result) -> Result:
    raw = result["raw"]
    runs, noise, plain = raw["runs"], raw["estimator_noise"], raw["runs"]["plain"]
    s, out = summarise_arms(runs), judge(runs, CLAIMS)
    for est, what in (("cdl", "defaults"), ("cdl_earlier", "earlier estimator")):
        holds, ratio = exceeds([r[f"grad/{est}/mean"] / r["grad/denoise/mean"] for r in plain], 1.0)
        per_batch = [pm(*mean_std([r[f"grad/{k}/per_batch"] for r in plain])) for k in (est, "denoise")]  # fmt: skip
        out.append(verdict(
            f"on the trained plain model, the systematic gradient (mean over 20 batches) of a CDL term at coefficient 1 ({what}) "
            "is larger than the denoising term's", holds,
            f"ratio of the norms {ratio} ({len(plain)} seeds); per batch {per_batch[0]} against {per_batch[1]}"))  # fmt: skip
    ratios, earlier = ([r["ratio_clean"] for r in noise[k]] for k in ("defaults", "earlier"))
    mean, lo, hi = mean_interval(ratios)
    bias = [pm(*mean_std([r["loss_bias"] for r in noise[k]])) for k in ("defaults", "earlier")]
    out.append(verdict(
        "at the defaults, the CDL logit's noise (exact denoiser, ring8) is below half the spread of the exact logit over clean examples",
        True if hi < 0.5 else False if lo >= 0.5 else None,
        f"noise/spread {ci(mean, lo, hi)} over {len(ratios)} batches of 128 (earlier estimator {ci(*mean_interval(earlier))}); "
        f"logistic loss bias {bias[0]} nats (earlier {bias[1]})"))  # fmt: skip
    c = raw["config"]
    rows = [[arm, f"{v['steps']['mean']:.0f}"] + arm_rows({arm: v}, COLUMNS)[0][1:] for arm, v in s.items()]  # fmt: skip
    body = [
        f"`{result['command']}` — ring8, {c['train.steps']} steps of batch {c['train.batch']}, {len(plain)} seeds; ε̂ error "
        "against the exact ε* at the mismatched (input, level) pairs CDL trains on and at matched ones; Picard sweeps to "
        "converge on a 50-step grid; few-step DDIM.",
        table(["arm", "steps", "ε err, mismatched", "ε err, matched", "Picard sweeps (50 steps)", "DDIM-5 NLL", "DDIM-10 NLL", "DDIM-5 MMD"], rows),
    ]  # fmt: skip
    return harness.page(result, TITLE, body, out, summary=s, figures=[("cdl_mismatch.png", "CDL on ring8")])  # fmt: skip


def plot(result: Result, path: Path) -> None:
    """ε error per λ' bin of each arm (bars: means; dots: seeds), mismatched and matched."""
    runs, labels = result["raw"]["runs"], [f"[{lo:g},{hi:g})" for lo, hi in LAMBDA_BINS]
    at, width = torch.arange(len(labels)), 0.8 / len(runs)
    with harness.figure(path, 1, 2, figsize=(13, 4.5)) as (_, axes):
        for kind, ax in zip(("mismatched", "matched"), axes, strict=True):
            for j, (name, rows) in enumerate(runs.items()):
                vals = torch.tensor([[r[f"eps_err/{kind}{lab}"] for lab in labels] for r in rows])
                ax.bar(at + width * j, vals.mean(0), width=width, label=name)
                ax.scatter((at + width * j).repeat(len(vals)), vals.flatten(), color="k", s=6)
            ax.set_xticks(at + 0.4, [f"λ' in {lab}" for lab in labels])
            ax.set(yscale="log", ylabel="‖ε̂ − ε*‖²/D", title=f"{kind} queries (ring8)")
            ax.legend(fontsize=7)


def measure(args: Args) -> None:
    base = {"data": "ring8", "train.steps": args.steps, "train.batch": 256, "net.width": 128, "eval.every": args.steps, "train.threads": 1}  # fmt: skip
    noise = {name: [estimator_noise(kw, seed, repeats=args.repeats) for seed in range(args.batches)] for name, kw in (("defaults", {}), ("earlier", EARLIER))}  # fmt: skip
    done: dict[str, dict] = {}  # the seed's runs so far

    def run(name: str, seed: int) -> dict:
        (coef, cdl), steps = ARMS.get(name, (0.0, {})), args.steps
        if name == EQUAL_TIME:  # plain, for this seed's training time of EQUAL_TIME_OF
            steps = round(args.steps * (done[EQUAL_TIME_OF]["train_s"] / done["plain"]["train_s"]))
        config = base | {"seed": seed, "cdl.coef": coef}
        done[name] = run_arm(config, steps, cdl if coef > 0 else None)
        return done[name]

    runs = harness.arm_seed_loop([*ARMS, EQUAL_TIME], args.seeds, run,
                                 lambda r: f"mismatched {r[MISMATCHED]:.4f} ddim5 nll {r['ddim5/nll']:.3f} ({r['steps']:.0f} steps)")  # fmt: skip
    arms = {name: {"cdl.coef": coef, "cdl_kwargs": cdl} for name, (coef, cdl) in ARMS.items()}
    arms[EQUAL_TIME] = {"train.steps": f"steps × train_s({EQUAL_TIME_OF}) / train_s(plain)"}
    raw = {"config": base, "estimator_noise": noise, "runs": runs, "loadavg_after": harness.loadavg()}  # fmt: skip
    harness.finish(args, harness.new(args, arms, raw), summarise, plot)


if __name__ == "__main__":
    smoke = {"seeds": [0, 1], "steps": 10, "batches": 1, "repeats": 4}
    harness.main(NAME, __doc__, summarise, measure, smoke, threads=1, seeds=[0, 1, 2], steps=2000,
                 batches=3, repeats=40)  # fmt: skip
