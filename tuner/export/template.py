"""The loss weighting and timestep density a diffsearch search found, for a diffusers-style loop.

Self-contained (torch only). `python -m tuner.export BEST.json --to python` writes this file with
the found values in the block below; in a training step:

    timesteps = sample_timesteps(bsz, noise_scheduler.alphas_cumprod, generator)   # not randint
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    mse = ((model_pred.float() - target.float()) ** 2).mean(dim=list(range(1, target.ndim)))
    loss = (loss_weight(timesteps, noise_scheduler.alphas_cumprod, prediction_type) * mse).mean()

Notation (the project's METHODS.md): λ = log SNR = log(ᾱ/(1 − ᾱ)); the found weighting w(λ)
multiplies the ε-MSE, and a P-MSE is c_P·ε-MSE (c = 1 for ε, (SNR + 1)/SNR for v, 1/SNR for x0,
(1 + SNR^−1/2)² for the rectified-flow velocity), so the weight of the P-MSE is w/c_P. A density
q(λ) gives timestep t the mass q puts between the midpoints of its neighbours' λ. Rectified-flow
models: pass alphas_cumprod = (1 − σ)²/((1 − σ)² + σ²) of the scheduler's σ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# >>> found >>>
WEIGHTING: dict = {"name": "constant"}
NORMALIZER = 1.0
DENSITY: dict = {"name": "cosine", "logsnr_min": -15.0, "logsnr_max": 15.0, "shift": 1.0}
# <<< found <<<

LOG_W_MAX = 60.0  # weights are capped at e^60, as in the search
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow")


def logsnr(timesteps: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """λ_t = log(ᾱ_t/(1 − ᾱ_t)) of integer timesteps, in float64."""
    abar = alphas_cumprod.to(device=timesteps.device, dtype=torch.float64)[timesteps.long()]
    return torch.log(abar) - torch.log1p(-abar)


def _log_snr_plus(ls: Tensor, k: float) -> Tensor:
    return ls if k == 0.0 else torch.logaddexp(ls, torch.full_like(ls, math.log(k)))


def eps_weight(lam: Tensor) -> Tensor:
    """The found w(λ) on the ε-MSE (normalisation included)."""
    w = WEIGHTING
    name = w["name"]
    ls = lam.clamp(max=math.log(w.get("snr_max", math.inf)))
    if name in ("constant", "flow") or (name == "parametric" and w["p"] == 0.0):
        flow = name == "flow"
        log_w = 2.0 * torch.nn.functional.softplus(-lam / 2.0) if flow else torch.zeros_like(lam)
    elif name in ("debiased", "x0"):
        log_w = (-0.5 if name == "debiased" else -1.0) * ls
    elif name == "p2":
        log_w = -w["gamma"] * _log_snr_plus(ls, w["k"])
    elif name == "min_snr":
        log_w = (math.log(w["gamma"]) - ls).clamp(max=0.0)
    elif name == "edm":
        log_inv = -ls - 2.0 * math.log(w["sigma_data"])
        return (1.0 + torch.exp(log_inv.clamp(max=LOG_W_MAX))) / NORMALIZER
    elif name == "sigmoid":
        inside = lam.clamp(*support())
        log_w = torch.nn.functional.logsigmoid(w["bias"] - lam) - density_log_prob(inside)
    elif name == "parametric":
        log_w = -w["p"] * _log_snr_plus(ls, w["k"])
        if w["clamp"] > 0.0:
            log_w = log_w.clamp(max=-w["p"] * math.log(w["clamp"] + w["k"]))
    else:
        raise ValueError(f"unknown weighting {name!r}")
    return torch.exp(log_w.clamp(max=LOG_W_MAX)) / NORMALIZER


def mse_factor(lam: Tensor, prediction_type: str) -> Tensor:
    """c_P of P-MSE = c_P·ε-MSE."""
    if prediction_type == "epsilon":
        return torch.ones_like(lam)
    if prediction_type == "v_prediction":
        return 1.0 + torch.exp(-lam)
    if prediction_type == "sample":
        return torch.exp(-lam)
    if prediction_type == "flow":
        return torch.exp(2.0 * torch.nn.functional.softplus(-lam / 2.0))
    raise ValueError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")


def loss_weight(
    timesteps: Tensor, alphas_cumprod: Tensor, prediction_type: str = "epsilon"
) -> Tensor:
    """The per-example weight of the MSE of `prediction_type` at integer `timesteps` (float32)."""
    lam = logsnr(timesteps, alphas_cumprod)
    return (eps_weight(lam) / mse_factor(lam, prediction_type)).float()


# -- the density q(λ): shifted by −2 log shift, truncated to [logsnr_min, logsnr_max] ---------------
def _mode_g(x: Tensor, s: float) -> Tensor:
    return (1.0 + s) * x - s * torch.sin(math.pi * x / 2.0) ** 2


def _mode_u_below(lam: Tensor, s: float) -> Tensor:
    """SD3's mode sampling: the u of a level λ ≤ 0, by bisection of g(u) = sigmoid(λ/2)."""
    target = torch.sigmoid(lam / 2.0)
    lo, hi = torch.zeros_like(target), torch.full_like(target, 0.5)
    for _ in range(64):
        mid = (lo + hi) / 2.0
        low = _mode_g(mid, s) < target
        lo, hi = torch.where(low, mid, lo), torch.where(low, hi, mid)
    return (lo + hi) / 2.0


def _linear_beta_t(lam: Tensor) -> Tensor:
    """DDPM's continuous linear β (0.1, 20): the time of a level."""
    g = torch.nn.functional.softplus(-lam)
    return 2.0 * g / (0.1 + torch.sqrt(0.1**2 + 2.0 * 19.9 * g))


def _raw_cdf(lam: Tensor) -> Tensor:
    d = DENSITY
    name = d["name"]
    if name in ("cosine", "cosmap"):
        return (2.0 / math.pi) * torch.atan(torch.exp(lam / 2.0))
    if name == "linear_beta":
        return 1.0 - _linear_beta_t(lam)
    if name == "logistic":
        return torch.sigmoid((lam - d["loc"]) / d["scale"])
    if name in ("normal", "edm"):
        loc, scale = (d["loc"], d["scale"]) if name == "normal" else (2.4, 2.4)
        return torch.special.ndtr((lam - loc) / scale)
    if name == "mode":
        u = _mode_u_below(-lam.abs(), d["scale"])
        return torch.where(lam > 0, 1.0 - u, u)
    raise ValueError(f"unknown density {name!r}")


def _raw_log_pdf(lam: Tensor) -> Tensor:
    d = DENSITY
    name = d["name"]
    if name in ("cosine", "cosmap"):
        a = (lam / 2.0).abs()
        return -math.log(2.0 * math.pi) - (a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0))
    if name == "linear_beta":
        beta = 0.1 + 19.9 * _linear_beta_t(lam)
        return torch.nn.functional.logsigmoid(-lam) - torch.log(beta)
    if name == "logistic":
        z = (lam - d["loc"]) / d["scale"]
        sp = torch.nn.functional.softplus
        return -sp(z) - sp(-z) - math.log(d["scale"])
    if name in ("normal", "edm"):
        loc, scale = (d["loc"], d["scale"]) if name == "normal" else (2.4, 2.4)
        return -0.5 * ((lam - loc) / scale) ** 2 - math.log(scale * math.sqrt(2.0 * math.pi))
    if name == "mode":
        s = d["scale"]
        u = _mode_u_below(-lam.abs(), s)
        log_t = -torch.nn.functional.softplus(-lam / 2.0) - torch.nn.functional.softplus(lam / 2)
        dg = (1.0 + s) - s * (math.pi / 2.0) * torch.sin(math.pi * u)
        return log_t - math.log(2.0) - torch.log(dg)
    raise ValueError(f"unknown density {name!r}")


def support() -> tuple[float, float]:
    """[logsnr_min, logsnr_max] (linear β never goes below its λ(1), shifted)."""
    d = DENSITY
    lo, delta = d["logsnr_min"], 2.0 * math.log(d["shift"])
    if d["name"] == "linear_beta":
        one = torch.tensor(0.1 + 0.5 * 19.9, dtype=torch.float64)
        lo = max(lo, float(-torch.log(torch.expm1(one))) - delta)
    return lo, d["logsnr_max"]


def density_cdf(lam: Tensor) -> Tensor:
    """The truncated CDF of the found density q (float64)."""
    lo, hi = support()
    delta = 2.0 * math.log(DENSITY["shift"])
    ends = _raw_cdf(torch.tensor([lo, hi], dtype=torch.float64) + delta)
    u = (_raw_cdf(lam.to(torch.float64).clamp(lo, hi) + delta) - ends[0]) / (ends[1] - ends[0])
    return u.clamp(0.0, 1.0)


def density_log_prob(lam: Tensor) -> Tensor:
    """log q(λ) of the found density on its truncation (float64)."""
    lo, hi = support()
    delta = 2.0 * math.log(DENSITY["shift"])
    ends = _raw_cdf(torch.tensor([lo, hi], dtype=torch.float64) + delta)
    lam = lam.to(torch.float64).clamp(lo, hi)
    return _raw_log_pdf(lam + delta) - torch.log(ends[1] - ends[0])


def timestep_probs(alphas_cumprod: Tensor) -> Tensor:
    """P(timestep t): the mass q gives to the λ interval between the midpoints of t's neighbours
    (λ_t decreasing in t: the first timestep takes everything above, the last everything below)."""
    steps = torch.arange(alphas_cumprod.numel(), device=alphas_cumprod.device)
    lam = logsnr(steps, alphas_cumprod)
    mid = (lam[1:] + lam[:-1]) / 2.0
    inf = torch.full((1,), math.inf, dtype=torch.float64, device=lam.device)
    upper, lower = torch.cat([inf, mid]), torch.cat([mid, -inf])
    return (density_cdf(upper) - density_cdf(lower)).clamp(min=0.0)


def sample_timesteps(
    batch_size: int, alphas_cumprod: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """`batch_size` integer timesteps drawn from the found density (on the generator's device)."""
    probs = timestep_probs(alphas_cumprod)
    device = generator.device if generator is not None else alphas_cumprod.device
    return torch.multinomial(probs.to(device), batch_size, replacement=True, generator=generator)
