"""Samplers with one signature ``(model, x, logsnrs, generator=None, **opts)``.

``model(x, logsnr) -> eps_hat`` with ``logsnr`` of shape (B,); ``x`` is the starting noise
N(0, I) at ``logsnrs[0]``; ``logsnrs`` is increasing (``models.schedules.logsnr_grid``); the
return value is the x0 prediction (posterior mean) at ``logsnrs[-1]``.
Options common to all: ``clip_x0`` (float or None) clamps every x0 prediction to
[−clip_x0, clip_x0] (images in [−1, 1]).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from models.picard import sample_picard
from models.registry import Registry
from models.schedules import EpsFn, alpha_sigma, grid_levels, randn_from


def _ab(logsnr: float) -> tuple[float, float]:
    a, s = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    return float(a), float(s)


def _eps_x0(model: EpsFn, x: Tensor, logsnr: float, clip_x0: float | None) -> tuple[Tensor, Tensor]:
    """ε̂ and x̂0 at one level; with clipping, ε̂ is recomputed from the clipped x̂0."""
    alpha, sigma = _ab(logsnr)
    eps = model(x, torch.full((x.shape[0],), logsnr, dtype=x.dtype, device=x.device))
    x0 = (x - sigma * eps) / alpha
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x - alpha * x0) / sigma
    return eps, x0


def _no_extra(name: str, opts: dict) -> None:
    if opts:
        raise TypeError(f"{name}: unknown option(s) {sorted(opts)}; known: clip_x0")


@torch.no_grad()
def sample_ddim(
    model: EpsFn,
    x: Tensor,
    logsnrs: Tensor,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
    **opts: object,
) -> Tensor:
    """Deterministic DDIM (Song et al. 2021, Eq. 12 with η = 0): x_s = α_s x̂0 + σ_s ε̂.

    Args:
        model: ε-predictor ``model(x, logsnr: (B,)) -> eps_hat``.
        x: starting noise N(0, I) at ``logsnrs[0]``.
        logsnrs: increasing log-SNR levels.
        generator: unused (deterministic); accepted for the common signature.
        clip_x0: optional clamp of every x0 prediction.
    """
    _no_extra("sample_ddim", opts)
    levels = grid_levels(logsnrs)
    for lam_t, lam_s in zip(levels[:-1], levels[1:], strict=True):
        eps, x0 = _eps_x0(model, x, lam_t, clip_x0)
        alpha_s, sigma_s = _ab(lam_s)
        x = alpha_s * x0 + sigma_s * eps
    return _eps_x0(model, x, levels[-1], clip_x0)[1]


@torch.no_grad()
def sample_ddpm(
    model: EpsFn,
    x: Tensor,
    logsnrs: Tensor,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
    **opts: object,
) -> Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x̂0) (Kingma et al. 2021, VDM Eq. 33).

    With λ_t < λ_s and r = e^{λ_t − λ_s}: mean = α_s(1 − r) x̂0 + (α_s/α_t) r x_t,
    variance = σ_s²(1 − r).

    Args:
        model: ε-predictor ``model(x, logsnr: (B,)) -> eps_hat``.
        x: starting noise N(0, I) at ``logsnrs[0]``.
        logsnrs: increasing log-SNR levels.
        generator: source of the ancestral noise.
        clip_x0: optional clamp of every x0 prediction.
    """
    _no_extra("sample_ddpm", opts)
    levels = grid_levels(logsnrs)
    for lam_t, lam_s in zip(levels[:-1], levels[1:], strict=True):
        _, x0 = _eps_x0(model, x, lam_t, clip_x0)
        alpha_t, _ = _ab(lam_t)
        alpha_s, sigma_s = _ab(lam_s)
        r = torch.tensor(lam_t - lam_s, dtype=torch.float64)
        one_minus_r = float(-torch.expm1(r))
        mean = alpha_s * one_minus_r * x0 + (alpha_s / alpha_t) * float(r.exp()) * x
        x = mean + (sigma_s**2 * one_minus_r) ** 0.5 * randn_from(generator, x)
    return _eps_x0(model, x, levels[-1], clip_x0)[1]


@torch.no_grad()
def sample_heun(
    model: EpsFn,
    x: Tensor,
    logsnrs: Tensor,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
    **opts: object,
) -> Tensor:
    """EDM's 2nd-order Heun on the probability-flow ODE (Karras et al. 2022, Alg. 1, no churn)
    in the VE variables y = x/α, s = exp(−λ/2) = σ/α, where dy/ds = ε̂(y α, λ).

    Args:
        model: ε-predictor ``model(x, logsnr: (B,)) -> eps_hat``.
        x: starting noise N(0, I) at ``logsnrs[0]``.
        logsnrs: increasing log-SNR levels.
        generator: unused (deterministic); accepted for the common signature.
        clip_x0: optional clamp of every x0 prediction.
    """
    _no_extra("sample_heun", opts)
    levels = grid_levels(logsnrs)

    def slope(y: Tensor, lam: float) -> Tensor:
        alpha, _ = _ab(lam)
        return _eps_x0(model, y * alpha, lam, clip_x0)[0]

    y = x / _ab(levels[0])[0]
    for lam_t, lam_s in zip(levels[:-1], levels[1:], strict=True):
        s_t, s_s = _s(lam_t), _s(lam_s)
        d = slope(y, lam_t)
        y_euler = y + (s_s - s_t) * d
        y = y + (s_s - s_t) * 0.5 * (d + slope(y_euler, lam_s))
    return _eps_x0(model, y * _ab(levels[-1])[0], levels[-1], clip_x0)[1]


def _s(logsnr: float) -> float:
    """VE noise level s = exp(−λ/2)."""
    return float(torch.tensor(-logsnr / 2.0, dtype=torch.float64).exp())


# Every evaluation sampler, one signature (the module docstring), Picard iteration included.
SAMPLERS: Registry[Callable[..., Tensor]] = Registry("sampler")
SAMPLERS.add("ddim", sample_ddim)
SAMPLERS.add("ddpm", sample_ddpm)
SAMPLERS.add("heun", sample_heun)
SAMPLERS.add("picard", sample_picard)
