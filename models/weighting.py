"""The loss-weighting family w(λ): multipliers of the per-example ε-MSE (METHODS.md §1).

The training loss is E_{λ~q}[w(λ) ‖ε̂ − ε‖²], so the effective weighting over λ is w(λ)·q(λ)
(Kingma & Gao 2023). SNR = e^λ is clamped to at most ``snr_max`` before weighting, and every
weight is computed in log space and capped at e^60 so it stays finite for any λ (±inf included).
"""

import math

import torch
from torch import Tensor, nn

from models.registry import Registry
from models.schedules import NoiseDensity

_LOG_W_MAX = 60.0  # e^60 ≈ 1e26: finite in float32 even after multiplying by an MSE


def _exp(log_w: Tensor) -> Tensor:
    return torch.exp(log_w.clamp(max=_LOG_W_MAX))


def _log_snr(logsnr: Tensor, snr_max: float) -> Tensor:
    """log SNR with SNR clamped to at most snr_max."""
    return logsnr.clamp(max=math.log(snr_max))


def _log_snr_plus(logsnr: Tensor, k: float, snr_max: float) -> Tensor:
    """log(SNR + k), stable for SNR -> 0 and k = 0."""
    ls = _log_snr(logsnr, snr_max)
    if k == 0.0:
        return ls
    return torch.logaddexp(ls, torch.full_like(ls, math.log(k)))


def _check_snr_max(snr_max: float) -> float:
    if not snr_max > 0.0:
        raise ValueError(f"snr_max must be > 0, got {snr_max}")
    return float(snr_max)


# Every weighting of METHODS.md's table, with the configuration key of each argument.
WEIGHTINGS: Registry[type["Weighting"]] = Registry("weighting")
SNR_MAX = {"snr_max": "weighting.snr_max"}


class Weighting:
    """Base class: ``w(logsnr)`` -> tensor of the same shape, finite and >= 0."""

    def __call__(self, logsnr: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


@WEIGHTINGS.register("constant")
class Constant(Weighting):
    """w = 1: DDPM's "simple" loss (Ho et al. 2020)."""

    def __call__(self, logsnr: Tensor) -> Tensor:
        return torch.ones_like(logsnr)


@WEIGHTINGS.register("debiased", params=SNR_MAX)
class Debiased(Weighting):
    """w = SNR^(−1/2) (Yu et al. 2024, debiased estimation)."""

    def __init__(self, snr_max: float = 1e4) -> None:
        self.snr_max = _check_snr_max(snr_max)

    def __call__(self, logsnr: Tensor) -> Tensor:
        return _exp(-0.5 * _log_snr(logsnr, self.snr_max))


@WEIGHTINGS.register("x0", params=SNR_MAX)
class X0(Weighting):
    """w = 1/SNR: the x0-MSE, since ‖x0 − x̂0‖² = ‖ε − ε̂‖²/SNR."""

    def __init__(self, snr_max: float = 1e4) -> None:
        self.snr_max = _check_snr_max(snr_max)

    def __call__(self, logsnr: Tensor) -> Tensor:
        return _exp(-_log_snr(logsnr, self.snr_max))


# P2's γ is the exponent p of (SNR + k)^(−p), the parametric family's own knob.
@WEIGHTINGS.register("p2", params={"k": "weighting.k", "gamma": "weighting.p"} | SNR_MAX)
class P2(Weighting):
    """w = (k + SNR)^(−γ) (Choi et al. 2022, perception-prioritised weighting)."""

    def __init__(self, k: float = 1.0, gamma: float = 1.0, snr_max: float = 1e4) -> None:
        if k < 0.0:
            raise ValueError(f"P2 k must be >= 0, got {k}")
        self.k, self.gamma, self.snr_max = float(k), float(gamma), _check_snr_max(snr_max)

    def __call__(self, logsnr: Tensor) -> Tensor:
        return _exp(-self.gamma * _log_snr_plus(logsnr, self.k, self.snr_max))


@WEIGHTINGS.register("min_snr", params={"gamma": "weighting.min_snr_gamma"} | SNR_MAX)
class MinSNR(Weighting):
    """w = min(SNR, γ)/SNR (Hang et al. 2023, min-SNR-γ as an ε-MSE multiplier)."""

    def __init__(self, gamma: float = 5.0, snr_max: float = 1e4) -> None:
        if not gamma > 0.0:
            raise ValueError(f"min-SNR gamma must be > 0, got {gamma}")
        self.gamma, self.snr_max = float(gamma), _check_snr_max(snr_max)

    def __call__(self, logsnr: Tensor) -> Tensor:
        # min(SNR, γ)/SNR = min(1, γ/SNR)
        return _exp((math.log(self.gamma) - _log_snr(logsnr, self.snr_max)).clamp(max=0.0))


@WEIGHTINGS.register("edm", params={"sigma_data": "weighting.sigma_data"} | SNR_MAX)
class EDM(Weighting):
    """w = 1 + 1/(SNR σ_d²): EDM's λ(σ) = (σ² + σ_d²)/(σ σ_d)² (Karras et al. 2022, Eq. 8)
    moved from the x0-error (VE, σ² = 1/SNR) to the ε-error."""

    def __init__(self, sigma_data: float = 0.5, snr_max: float = 1e4) -> None:
        if not sigma_data > 0.0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.sigma_data, self.snr_max = float(sigma_data), _check_snr_max(snr_max)

    def __call__(self, logsnr: Tensor) -> Tensor:
        log_inv = -_log_snr(logsnr, self.snr_max) - 2.0 * math.log(self.sigma_data)
        return 1.0 + _exp(log_inv)


@WEIGHTINGS.register("sigmoid", params={"bias": "weighting.bias"}, needs_density=True)
class Sigmoid(Weighting):
    """Per-sample multiplier sigmoid(b − λ)/q(λ), so that the effective weight w·q is
    sigmoid(b − λ) (Kingma & Gao 2023, §4 "sigmoid weighting"). Needs the training density q."""

    def __init__(self, bias: float = 0.0, density: NoiseDensity | None = None) -> None:
        if density is None:
            raise ValueError("Sigmoid weighting needs the training density q(λ): pass density=")
        self.bias = float(bias)
        self.density = density

    def __call__(self, logsnr: Tensor) -> Tensor:
        # λ outside the truncation is never drawn; evaluate q at the nearest end to stay finite
        lam = logsnr.clamp(self.density.logsnr_min, self.density.logsnr_max)
        log_w = nn.functional.logsigmoid(self.bias - logsnr) - self.density.log_prob(lam)
        return _exp(log_w)


@WEIGHTINGS.register(
    "parametric",
    params={"p": "weighting.p", "k": "weighting.k", "clamp": "weighting.clamp"} | SNR_MAX,
)
class Parametric(Weighting):
    """w = (SNR + k)^(−p), optionally capped at its value at SNR = clamp (METHODS.md §1).

    p=0: constant; p=½, k=0: debiased; p=1, k=0: x0; k=1, p=γ: P2; p=1, k=0, clamp=γ:
    min-SNR-γ divided by γ.
    """

    def __init__(
        self, p: float = 0.5, k: float = 0.0, clamp: float = 0.0, snr_max: float = 1e4
    ) -> None:
        if k < 0.0 or clamp < 0.0:
            raise ValueError(f"parametric k and clamp must be >= 0, got k={k}, clamp={clamp}")
        self.p, self.k, self.clamp = float(p), float(k), float(clamp)
        self.snr_max = _check_snr_max(snr_max)

    def __call__(self, logsnr: Tensor) -> Tensor:
        if self.p == 0.0:
            return torch.ones_like(logsnr)
        log_w = -self.p * _log_snr_plus(logsnr, self.k, self.snr_max)
        if self.clamp > 0.0:
            log_w = log_w.clamp(max=-self.p * math.log(self.clamp + self.k))
        return _exp(log_w)


@WEIGHTINGS.register("flow")
class Flow(Weighting):
    """w = (1 + SNR^(−1/2))²: the unweighted rectified-flow velocity MSE (SD3, Esser et al. 2024;
    target u = ε − x0) as a multiplier of the ε-MSE, since u-MSE = ε-MSE·(1 + SNR^(−1/2))²
    (METHODS.md §5). What SD3/Flux trainers weight by default, so their published densities can
    be searched and exported with it."""

    def __call__(self, logsnr: Tensor) -> Tensor:
        return _exp(2.0 * nn.functional.softplus(-logsnr / 2.0))


class Normalized(Weighting):
    """w / E_q[w], with E_q[w] computed once by trapezoid quadrature in λ over the density's
    support, so the loss scale (and the effective learning rate) does not move with w."""

    def __init__(self, w: Weighting, density: NoiseDensity, points: int = 4001) -> None:
        self.w = w
        self.density = density
        lam = torch.linspace(density.logsnr_min, density.logsnr_max, points, dtype=torch.float64)
        f = w(lam).to(torch.float64) * density.log_prob(lam).exp()
        self.mean = float(torch.trapezoid(f, lam))
        if not (math.isfinite(self.mean) and self.mean > 0.0):
            raise ValueError(f"E_q[w] = {self.mean} for {w!r} under {density!r}; cannot normalise")

    def __call__(self, logsnr: Tensor) -> Tensor:
        return self.w(logsnr) / self.mean


class LogVarHead(nn.Module):
    """EDM2's learned log-variance u(λ) (Karras et al. 2024, §5 / Eq. 21): Fourier features of
    c = λ/8 -> Linear -> scalar, zero-initialised so u = 0 at the start. The loss becomes
    w/e^u · mse + u, minimised at e^{u(λ)} = E[w · mse | λ]."""

    def __init__(self, features: int = 32, max_freq: float = 32.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(max_freq), features)))
        self.linear = nn.Linear(2 * features + 1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, logsnr: Tensor) -> Tensor:
        c = (logsnr / 8.0)[:, None]
        arg = c * self.freqs[None, :]
        return self.linear(torch.cat([arg.cos(), arg.sin(), c], dim=1)).squeeze(1)


def effective_weighting(w: Weighting, density: NoiseDensity, logsnr: Tensor) -> Tensor:
    """The effective weighting w(λ)·q(λ) over λ (Kingma & Gao 2023) — the one to plot."""
    return w(logsnr) * density.log_prob(logsnr).exp()
