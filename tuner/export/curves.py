"""Effective weightings w(λ)·q(λ) over λ (Kingma & Gao 2023), the project's and a trainer's, and
the L1 distance between them once each is normalised to integrate to 1 over the config's λ range
(0: the same loss; 2: disjoint). METHODS.md §5 holds every conversion used here.

A trainer's setting is its native flags plus its effective weighting, built from three parts:
the weight it puts on the MSE of its prediction type (turned into a weight on the ε-MSE by
P-MSE = c_P·ε-MSE), the density of its time variable τ in [0, 1] (0 clean, 1 noise), and its
schedule, the map from τ to λ. Time densities are written as densities over the rectified-flow
λ_F = −2 logit τ (models/schedules.py), so SD3's shift is their `shift`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from scipy.optimize import minimize
from torch import Tensor

from models.schedules import NoiseDensity
from models.weighting import effective_weighting
from tuner.config.build import build_density, build_weighting

Curve = Callable[[Tensor], Tensor]  # λ (float64) -> unnormalised w(λ)·q(λ)
POINTS = 2001  # quadrature points over [noise.logsnr_min, noise.logsnr_max]
EXACT = 1e-6  # below this L1 distance a setting is the found one (float64 quadrature: ~1e-12)
WIDE = (-60.0, 60.0)  # the support of a trainer's time density over λ_F (τ in (1e-13, 1 − 1e-13))


def grid(config: dict[str, Any], points: int = POINTS) -> Tensor:
    return torch.linspace(
        config["noise.logsnr_min"], config["noise.logsnr_max"], points, dtype=torch.float64
    )


def ours(config: dict[str, Any]) -> Curve:
    """The found w(λ)·q(λ): the config's weighting (normalisation included) and density."""
    density = build_density(config)
    weighting = build_weighting(config, density)
    return lambda lam: effective_weighting(weighting, density, lam)


def distance(a: Curve, b: Curve, lam: Tensor) -> float:
    """∫ |a/∫a − b/∫b| dλ over the grid (trapezoid); 2 when either has no mass there."""
    fa, fb = a(lam).nan_to_num(0.0), b(lam).nan_to_num(0.0)
    za, zb = float(torch.trapezoid(fa, lam)), float(torch.trapezoid(fb, lam))
    if not (za > 0 and zb > 0 and math.isfinite(za) and math.isfinite(zb)):
        return 2.0
    return float(torch.trapezoid((fa / za - fb / zb).abs(), lam))


# -- a trainer's pieces ----------------------------------------------------------------------------
def mse_factor(prediction: str, lam: Tensor) -> Tensor:
    """c_P with P-MSE = c_P·ε-MSE (METHODS.md §5): 1 for ε, (SNR + 1)/SNR for v, 1/SNR for x0,
    (1 + SNR^(−1/2))² for the rectified-flow velocity."""
    if prediction == "epsilon":
        return torch.ones_like(lam)
    if prediction == "v_prediction":
        return 1.0 + torch.exp(-lam)
    if prediction == "sample":
        return torch.exp(-lam)
    if prediction == "flow":
        return torch.exp(2.0 * torch.nn.functional.softplus(-lam / 2.0))
    raise ValueError(f"unknown prediction type {prediction!r}")


def flow_sigma(lam: Tensor) -> Tensor:
    """The rectified-flow σ (= t) of a level: SNR = ((1 − σ)/σ)², σ = sigmoid(−λ/2)."""
    return torch.sigmoid(-lam / 2.0)


class Schedule:
    """A trainer's map from its time τ in [0, 1] (the timestep over the number of timesteps) to λ.

    ``effective(weight_eps, tau_density)`` is the trainer's w(λ)·q(λ) for its weight on the ε-MSE
    and its time density written over λ_F = −2 logit τ."""

    name = ""

    def effective(self, weight_eps: Curve, tau_density: NoiseDensity) -> Curve:
        raise NotImplementedError


class FlowSchedule(Schedule):
    """Rectified flow (SD3, Flux): τ = σ_flow, λ = −2 logit τ, in the continuous limit of the
    trainers' 1000 levels. The time density over λ_F is the density over λ."""

    name = "rectified flow"

    def effective(self, weight_eps: Curve, tau_density: NoiseDensity) -> Curve:
        return lambda lam: weight_eps(lam) * tau_density.log_prob(lam).exp()


class ContinuousSchedule(Schedule):
    """A continuous VP schedule λ(τ): q(λ) = p(τ(λ))·|dτ/dλ|, p the time density over τ."""

    def __init__(self, name: str, tau: Curve, log_dtau: Curve) -> None:
        self.name, self.tau, self.log_dtau = name, tau, log_dtau

    def effective(self, weight_eps: Curve, tau_density: NoiseDensity) -> Curve:
        def curve(lam: Tensor) -> Tensor:
            tau = self.tau(lam)
            log_tau, log_1m_tau = tau.log(), (-tau).log1p()
            lam_f = 2.0 * (log_1m_tau - log_tau)  # −2 logit τ
            # p(τ) = q_F(λ_F)·|dλ_F/dτ| = q_F(λ_F)·2/(τ(1 − τ))
            log_p = tau_density.log_prob(lam_f) + math.log(2.0) - log_tau - log_1m_tau
            return weight_eps(lam) * torch.exp(log_p + self.log_dtau(lam))

        return curve


def cosine_schedule() -> ContinuousSchedule:
    """ᾱ(τ) = cos²(πτ/2) (Nichol & Dhariwal 2021 without the offset): λ = −2 log tan(πτ/2),
    |dτ/dλ| = 1/(2π cosh(λ/2)): uniform τ is the project's cosine density."""

    def log_dtau(lam: Tensor) -> Tensor:
        return -math.log(2.0 * math.pi) - torch.log(torch.cosh(lam / 2.0))

    return ContinuousSchedule(
        "cosine", lambda lam: (2.0 / math.pi) * torch.atan(torch.exp(-lam / 2.0)), log_dtau
    )


class DiscreteSchedule(Schedule):
    """A diffusers scheduler's ``alphas_cumprod`` over T timesteps: λ_t = log(ᾱ_t/(1 − ᾱ_t)).
    Timestep t gets the mass of τ in [t/T, (t + 1)/T), spread over the λ interval between the
    midpoints of its neighbours' λ (METHODS.md §5), and the trainer weights it at λ_t."""

    def __init__(self, name: str, alphas_cumprod: Tensor) -> None:
        abar = alphas_cumprod.to(torch.float64)
        self.name = name
        self.levels = torch.log(abar) - torch.log1p(-abar)  # decreasing in t
        mid = (self.levels[1:] + self.levels[:-1]) / 2.0
        first = 2 * self.levels[0] - mid[0]
        last = 2 * self.levels[-1] - mid[-1]
        self.upper = torch.cat([first[None], mid])  # cell t: [lower_t, upper_t)
        self.lower = torch.cat([mid, last[None]])

    def masses(self, tau_density: NoiseDensity) -> Tensor:
        """P(timestep t) for a time density over λ_F: the mass of τ in [t/T, (t + 1)/T)."""
        steps = self.levels.numel()
        edges = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        edges = edges.clamp(1e-300, 1.0)
        lam_f = 2.0 * (torch.log1p(-edges) - torch.log(edges))  # −2 logit τ: −inf at τ = 1
        cdf = tau_density.cdf(lam_f.clamp(*WIDE))
        return cdf[:-1] - cdf[1:]

    def effective(self, weight_eps: Curve, tau_density: NoiseDensity) -> Curve:
        per_step = self.masses(tau_density) * weight_eps(self.levels)

        def curve(lam: Tensor) -> Tensor:
            # the cell of each λ: levels decrease in t, so count the upper edges above λ
            t = (self.upper[None, :] > lam[:, None]).sum(1) - 1
            inside = (t >= 0) & (lam >= self.lower[t.clamp(min=0)])
            t = t.clamp(0, self.levels.numel() - 1)
            width = self.upper[t] - self.lower[t]
            return torch.where(inside, per_step[t] / width, torch.zeros_like(lam))

        return curve


def _betas_for_alpha_bar(steps: int, offset: float = 0.008) -> Tensor:
    """diffusers' ``betas_for_alpha_bar`` ("squaredcos_cap_v2"): β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T),
    0.999), ᾱ(t) = cos²((t + s)/(1 + s)·π/2) (Nichol & Dhariwal 2021, Eq. 17)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    abar = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


def alphas_cumprod(name: str, steps: int = 1000) -> Tensor:
    """ᾱ_t of diffusers' DDPMScheduler beta_schedule ``name`` (schedulers/scheduling_ddpm.py)."""
    if name == "scaled_linear":  # Stable Diffusion 1.x/2.x/XL: β in [0.00085, 0.012]
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64) ** 2
    elif name == "linear":  # DDPM: β in [1e-4, 0.02]
        betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    elif name == "squaredcos_cap_v2":
        betas = _betas_for_alpha_bar(steps)
    else:
        raise ValueError(f"unknown beta schedule {name!r}")
    return torch.cumprod(1.0 - betas, 0)


SCHEDULES = ("cosine", "squaredcos_cap_v2", "scaled_linear", "linear")


def schedule(name: str) -> Schedule:
    """A DDPM-family trainer's schedule: the continuous cosine one, or a discrete diffusers one."""
    if name == "cosine":
        return cosine_schedule()
    return DiscreteSchedule(name, alphas_cumprod(name))


# -- settings, families of settings, and the nearest one ------------------------------------------
@dataclass(frozen=True)
class Param:
    """One continuous parameter of a family: its name, range, and the value read off the config
    that makes the family's setting the found one when it can be (else a published default)."""

    name: str
    low: float
    high: float
    guess: Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class Family:
    """Settings of one flag combination: ``make(values)`` gives (the native flags, the curve)."""

    name: str
    make: Callable[[dict[str, float]], tuple[str, Curve]]
    params: Sequence[Param] = field(default_factory=tuple)


@dataclass(frozen=True)
class Fit:
    family: str
    flags: str
    distance: float
    values: dict[str, float]

    @property
    def exact(self) -> bool:
        return self.distance < EXACT


def _shown(value: float, digits: int = 4) -> float:
    """A parameter as printed: 4 significant digits for a fitted one, 6 for one read off the
    config (what the flags then say is the found value to 1e-6)."""
    return float(f"{value:.{digits}g}")


def _evaluate(family: Family, values: Sequence[float], target: Curve, lam: Tensor) -> float:
    named = {p.name: float(v) for p, v in zip(family.params, values, strict=True)}
    try:
        _, curve = family.make(named)
        return distance(target, curve, lam)
    except (ValueError, RuntimeError):  # a parameter the family's density refuses
        return 2.0


def _fit_family(family: Family, config: dict[str, Any], target: Curve, lam: Tensor) -> Fit:
    params = family.params
    guess = [min(max(p.guess(config), p.low), p.high) for p in params]
    best = (_evaluate(family, guess, target, lam), guess)
    if params and best[0] >= EXACT:
        axes = [torch.linspace(p.low, p.high, 5, dtype=torch.float64).tolist() for p in params]
        for point in _grid_points(axes):
            d = _evaluate(family, point, target, lam)
            if d < best[0]:
                best = (d, point)
        result = minimize(
            lambda v: _evaluate(family, v, target, lam),
            best[1],
            method="Nelder-Mead",
            bounds=[(p.low, p.high) for p in params],
            options={"xatol": 1e-5, "fatol": 1e-8, "maxiter": 100 * len(params)},
        )
        if result.fun < best[0]:
            best = (float(result.fun), list(result.x))
    shown = {p.name: _shown(v) for p, v in zip(params, best[1], strict=True)}
    flags, curve = family.make(shown)
    return Fit(family.name, flags, distance(target, curve, lam), shown)


def _grid_points(axes: list[list[float]]) -> list[list[float]]:
    points: list[list[float]] = [[]]
    for axis in axes:
        points = [p + [v] for p in points for v in axis]
    return points


def nearest(families: Sequence[Family], config: dict[str, Any]) -> Fit:
    """The family setting whose normalised w·q is nearest the config's: an exact one (read off
    the config) when some family has it, else the best of every family's fitted parameters."""
    lam, target = grid(config), ours(config)
    for family in families:  # exact first: the parameters the config itself implies
        values = {p.name: _shown(p.guess(config), 6) for p in family.params}
        if all(p.low <= values[p.name] <= p.high for p in family.params):
            try:
                flags, curve = family.make(values)
            except ValueError:  # a value the family's density refuses
                continue
            d = distance(target, curve, lam)
            if d < EXACT:
                return Fit(family.name, flags, d, values)
    fits = [_fit_family(f, config, target, lam) for f in families]
    return min(fits, key=lambda f: f.distance)
