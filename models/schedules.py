"""Noise-level densities q(λ) over the log-SNR and the grids samplers walk.

Variance-preserving process indexed by λ = log SNR: x = α x0 + σ ε with α² = sigmoid(λ),
σ² = sigmoid(−λ) (METHODS.md, "One notation"). Every density is truncated to
[logsnr_min, logsnr_max], normalised there, and sampled by inverse CDF so that a
``torch.Generator`` makes the draws deterministic. CDFs are evaluated in float64.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nn_f
from torch import Tensor

from models.registry import Registry

EpsFn = Callable[[Tensor, Tensor], Tensor]  # model(x, logsnr) -> eps_hat

LOGSNR_MIN = -15.0
LOGSNR_MAX = 15.0


def alpha_sigma(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ))."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def bcast(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-example (B,) tensor to (B, 1, ..., 1) so it broadcasts against ``like``."""
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def _log_cosh(x: Tensor) -> Tensor:
    ax = x.abs()
    return ax + torch.log1p(torch.exp(-2.0 * ax)) - math.log(2.0)


# The densities q(λ) a trial can train with, each truncated to [noise.logsnr_min, noise.logsnr_max]
# and moved by the resolution shift noise.shift.
DENSITIES: Registry[type["NoiseDensity"]] = Registry("noise density")
BOUNDS = {
    "logsnr_min": "noise.logsnr_min",
    "logsnr_max": "noise.logsnr_max",
    "shift": "noise.shift",
}


def draw_device(
    generator: torch.Generator | None, fallback: torch.device | str = "cpu"
) -> torch.device:
    """Where a draw from ``generator`` is made: on the generator's own device (so a trial on an
    accelerator draws there, with no host-to-device copy), ``fallback``'s without a generator."""
    return torch.device(fallback) if generator is None else generator.device


def randn_from(generator: torch.Generator | None, like: Tensor) -> Tensor:
    """ε ~ N(0, I) shaped and typed like ``like``, drawn on the generator's device, on ``like``'s."""
    eps = torch.randn(
        like.shape,
        generator=generator,
        dtype=like.dtype,
        device=draw_device(generator, like.device),
    )
    return eps.to(like.device)


class NoiseDensity:
    """Base class: a density over λ, moved by a resolution shift, truncated to
    [logsnr_min, logsnr_max].

    Subclasses give the untruncated, unshifted CDF ``_cdf``, its inverse ``_icdf`` and
    ``_log_pdf``, all on float64 tensors; the shift, truncation, normalisation and sampling live
    here. The shift is SD3's and Flux's (Esser et al. 2024, §5.3.2): t' = shift·t/(1 + (shift−1)t)
    on rectified-flow time, i.e. every level moves to λ' = λ − 2 log shift (METHODS.md §5), so
    q'(λ) = q(λ + 2 log shift); shift = 1 leaves every computation as it was.
    """

    shift = 1.0  # an instance holds its own only when it moves the levels (vars() as before)

    def __init__(
        self, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX, shift: float = 1.0
    ) -> None:
        if not logsnr_min < logsnr_max:
            raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min} >= {logsnr_max}")
        if not shift > 0.0:
            raise ValueError(f"shift must be > 0, got {shift}")
        self.logsnr_min = float(logsnr_min)
        self.logsnr_max = float(logsnr_max)
        if shift != 1.0:
            self.shift = float(shift)
        self._delta = 2.0 * math.log(shift)  # λ' = λ − δ
        self._set_truncation()

    def _unshifted(self, logsnr: Tensor) -> Tensor:
        """The level before the shift, λ + 2 log shift (the identity at shift = 1)."""
        return logsnr + self._delta if self._delta else logsnr

    def _set_truncation(self) -> None:
        ends = torch.tensor([self.logsnr_min, self.logsnr_max], dtype=torch.float64)
        self._cdf_lo, self._cdf_hi = (float(c) for c in self._cdf(self._unshifted(ends)))
        self._log_z = math.log(self._cdf_hi - self._cdf_lo)

    def _cdf(self, logsnr: Tensor) -> Tensor:
        raise NotImplementedError

    def _icdf(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        raise NotImplementedError

    def cdf(self, logsnr: Tensor) -> Tensor:
        """CDF of the truncated density (same dtype as the input)."""
        lam = logsnr.to(torch.float64).clamp(self.logsnr_min, self.logsnr_max)
        u = (self._cdf(self._unshifted(lam)) - self._cdf_lo) / (self._cdf_hi - self._cdf_lo)
        return u.clamp(0.0, 1.0).to(logsnr.dtype)

    def icdf(self, u: Tensor) -> Tensor:
        """Inverse CDF of the truncated density: u in [0, 1] -> λ in [logsnr_min, logsnr_max]."""
        u64 = self._cdf_lo + u.to(torch.float64) * (self._cdf_hi - self._cdf_lo)
        lam = self._icdf(u64)
        if self._delta:
            lam = lam - self._delta
        lam = lam.clamp(self.logsnr_min, self.logsnr_max)
        return lam.to(u.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` levels by inverse CDF on the generator's device; returns (n,) float32."""
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=draw_device(generator))
        return self.icdf(u).to(torch.float32)

    def log_prob(self, logsnr: Tensor) -> Tensor:
        """log q(λ), normalised on the truncation; −inf outside it."""
        lam = logsnr.to(torch.float64)
        inside = (lam >= self.logsnr_min) & (lam <= self.logsnr_max)
        inner = self._unshifted(lam.clamp(self.logsnr_min, self.logsnr_max))
        lp = self._log_pdf(inner) - self._log_z
        return torch.where(inside, lp, torch.full_like(lp, -math.inf)).to(logsnr.dtype)

    def __repr__(self) -> str:
        shift = f", shift={self.shift}" if self.shift != 1.0 else ""
        return (
            f"{type(self).__name__}(logsnr_min={self.logsnr_min}, "
            f"logsnr_max={self.logsnr_max}{shift})"
        )


@DENSITIES.register("cosine", params=BOUNDS)
class CosineDensity(NoiseDensity):
    """Cosine schedule (Nichol & Dhariwal 2021): t ~ U, λ = −2 log tan(πt/2).

    q(λ) = 1/(2π cosh(λ/2)) and F(λ) = (2/π) atan(exp(λ/2)) before truncation.
    """

    def _cdf(self, logsnr: Tensor) -> Tensor:
        return (2.0 / math.pi) * torch.atan(torch.exp(logsnr / 2.0))

    def _icdf(self, u: Tensor) -> Tensor:
        return 2.0 * torch.log(torch.tan(math.pi * u / 2.0))

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        return -math.log(2.0 * math.pi) - _log_cosh(logsnr / 2.0)


@DENSITIES.register("linear_beta", params=BOUNDS)
class LinearBetaDensity(NoiseDensity):
    """Continuous DDPM linear-β VP schedule (Ho et al. 2020; Song et al. 2021), t ~ U.

    β(t) = β0 + (β1 − β0) t, log ᾱ(t) = −(β0 t + ½(β1 − β0) t²), λ = log(ᾱ/(1 − ᾱ)),
    so q(λ) ∝ 1/|dλ/dt| = σ²(λ)/β(t(λ)). The schedule never goes below λ(1) ≈ −10.05, so
    ``logsnr_min`` is raised to λ(1) when it lies below: the attributes give the actual support.
    """

    def __init__(
        self,
        logsnr_min: float = LOGSNR_MIN,
        logsnr_max: float = LOGSNR_MAX,
        beta_0: float = 0.1,
        beta_1: float = 20.0,
        shift: float = 1.0,
    ) -> None:
        if not 0.0 < beta_0 < beta_1:
            raise ValueError(f"need 0 < beta_0 < beta_1, got {beta_0}, {beta_1}")
        if not shift > 0.0:
            raise ValueError(f"shift must be > 0, got {shift}")
        self.beta_0 = float(beta_0)
        self.beta_1 = float(beta_1)
        lam_end = float(self.logsnr_of_t(torch.tensor(1.0, dtype=torch.float64)))
        if shift != 1.0:  # the support's end moves with the shift
            lam_end -= 2.0 * math.log(shift)
        super().__init__(max(float(logsnr_min), lam_end), logsnr_max, shift)

    def logsnr_of_t(self, t: Tensor) -> Tensor:
        """λ(t) = −log(expm1(−log ᾱ(t)))."""
        neg_log_abar = self.beta_0 * t + 0.5 * (self.beta_1 - self.beta_0) * t**2
        return -torch.log(torch.expm1(neg_log_abar))

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        """Inverse of ``logsnr_of_t``: solve ½Δ t² + β0 t = softplus(−λ) (stable root)."""
        g = torch.nn.functional.softplus(-logsnr)
        d = self.beta_1 - self.beta_0
        return 2.0 * g / (self.beta_0 + torch.sqrt(self.beta_0**2 + 2.0 * d * g))

    def _cdf(self, logsnr: Tensor) -> Tensor:
        return 1.0 - self.t_of_logsnr(logsnr)  # λ decreasing in t, t ~ U(0, 1)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.logsnr_of_t(1.0 - u)

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        # |dλ/dt| = β(t)/(1 − ᾱ) = β(t)/σ²(λ)
        beta = self.beta_0 + (self.beta_1 - self.beta_0) * self.t_of_logsnr(logsnr)
        return torch.nn.functional.logsigmoid(-logsnr) - torch.log(beta)


@DENSITIES.register("logistic", params=BOUNDS | {"loc": "noise.loc", "scale": "noise.scale"})
class LogisticDensity(NoiseDensity):
    """λ ~ logistic(loc, scale) (Kingma & Gao 2023 shifted schedules; CDL's importance density)."""

    def __init__(
        self,
        logsnr_min: float = LOGSNR_MIN,
        logsnr_max: float = LOGSNR_MAX,
        loc: float = 0.0,
        scale: float = 1.0,
        shift: float = 1.0,
    ) -> None:
        if not scale > 0.0:
            raise ValueError(f"logistic scale must be > 0, got {scale}")
        self.loc = float(loc)
        self.scale = float(scale)
        super().__init__(logsnr_min, logsnr_max, shift)

    def _cdf(self, logsnr: Tensor) -> Tensor:
        return torch.sigmoid((logsnr - self.loc) / self.scale)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.loc + self.scale * torch.logit(u)

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        z = (logsnr - self.loc) / self.scale
        sp = torch.nn.functional.softplus
        return -sp(z) - sp(-z) - math.log(self.scale)


@DENSITIES.register("normal", params=BOUNDS | {"loc": "noise.loc", "scale": "noise.scale"})
class NormalDensity(NoiseDensity):
    """λ ~ N(loc, scale²): SD3's logit-normal over rectified-flow t (λ = −2 logit t, so
    logit-normal(m, s) is N(−2m, 2s)) and EDM's log-normal s (N(−2 P_mean, 2 P_std)) in one."""

    def __init__(
        self,
        logsnr_min: float = LOGSNR_MIN,
        logsnr_max: float = LOGSNR_MAX,
        loc: float = 0.0,
        scale: float = 1.0,
        shift: float = 1.0,
    ) -> None:
        if not scale > 0.0:
            raise ValueError(f"normal scale must be > 0, got {scale}")
        self.loc = float(loc)
        self.scale = float(scale)
        super().__init__(logsnr_min, logsnr_max, shift)

    def _cdf(self, logsnr: Tensor) -> Tensor:
        return torch.special.ndtr((logsnr - self.loc) / self.scale)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.loc + self.scale * torch.special.ndtri(u)

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        z = (logsnr - self.loc) / self.scale
        return -0.5 * z**2 - math.log(self.scale * math.sqrt(2.0 * math.pi))


@DENSITIES.register("edm", params=BOUNDS)
class EDMDensity(NoiseDensity):
    """EDM (Karras et al. 2022): ln s ~ N(p_mean, p_std²), λ = −2 ln s ~ N(−2 p_mean, 4 p_std²)."""

    def __init__(
        self,
        logsnr_min: float = LOGSNR_MIN,
        logsnr_max: float = LOGSNR_MAX,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        shift: float = 1.0,
    ) -> None:
        if not p_std > 0.0:
            raise ValueError(f"EDM p_std must be > 0, got {p_std}")
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)
        self.mean = -2.0 * self.p_mean
        self.std = 2.0 * self.p_std
        super().__init__(logsnr_min, logsnr_max, shift)

    def _cdf(self, logsnr: Tensor) -> Tensor:
        return torch.special.ndtr((logsnr - self.mean) / self.std)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.mean + self.std * torch.special.ndtri(u)

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        z = (logsnr - self.mean) / self.std
        return -0.5 * z**2 - math.log(self.std * math.sqrt(2.0 * math.pi))


# SD3's mode sampling is monotone in u for scale in [−1, 2/(π − 2)] (Esser et al. 2024, §3.1); at
# the upper end its density over λ is infinite at λ = 0, so the scale stays below it.
MODE_SCALE_MAX = 2.0 / (math.pi - 2.0)


@DENSITIES.register("mode", params=BOUNDS | {"scale": "noise.mode_scale"})
class ModeDensity(NoiseDensity):
    """SD3's "mode sampling with heavy tails" (Esser et al. 2024, §3.1; diffusers' and kohya's
    ``weighting_scheme="mode"`` with ``mode_scale``, OneTrainer's HEAVY_TAIL): u ~ U(0, 1),
    rectified-flow time t = 1 − u − s·(cos²(πu/2) − 1 + u), λ = −2 logit t (METHODS.md §5).

    With g(x) = (1 + s)x − s·sin²(πx/2): t = g(1 − u) and 1 − t = g(u), so λ(u) = 2 log g(u) −
    2 log g(1 − u), increasing in u, and q(λ) = 1/λ'(u) = t(1 − t)/(2 g'(u)) with
    g'(u) = (1 + s) − s(π/2) sin(πu). The law is symmetric, q(λ) = q(−λ); s = 0 is uniform t.
    """

    def __init__(
        self,
        logsnr_min: float = LOGSNR_MIN,
        logsnr_max: float = LOGSNR_MAX,
        scale: float = 1.29,
        shift: float = 1.0,
    ) -> None:
        if not -1.0 <= scale < MODE_SCALE_MAX:
            raise ValueError(
                f"mode scale must be in [-1, 2/(pi-2) = {MODE_SCALE_MAX:.4f}), got {scale}"
            )
        self.scale = float(scale)
        super().__init__(logsnr_min, logsnr_max, shift)

    def _g(self, x: Tensor) -> Tensor:
        return (1.0 + self.scale) * x - self.scale * torch.sin(math.pi * x / 2.0) ** 2

    def _dg(self, x: Tensor) -> Tensor:
        return (1.0 + self.scale) - self.scale * (math.pi / 2.0) * torch.sin(math.pi * x)

    def _u_below(self, logsnr: Tensor) -> Tensor:
        """u(λ) for λ ≤ 0: the root of g(u) = sigmoid(λ/2) in [0, ½] (g is increasing), bracketed
        by 12 bisections and polished by Newton steps on log g against log u (g ~ c·u or c·u²
        near 0, where that is linear), kept inside the bracket."""
        log_y = -nn_f.softplus(-logsnr / 2.0)  # log sigmoid(λ/2)
        lo, hi = torch.zeros_like(log_y), torch.full_like(log_y, 0.5)
        for _ in range(12):
            mid = (lo + hi) / 2.0
            low = torch.log(self._g(mid)) < log_y
            lo, hi = torch.where(low, mid, lo), torch.where(low, hi, mid)
        v = torch.log((lo + hi) / 2.0)
        for _ in range(6):
            u = v.exp()
            g = self._g(u)
            v = (v - (torch.log(g) - log_y) * g / (self._dg(u) * u)).clamp(lo.log(), hi.log())
        return v.exp()

    def _cdf(self, logsnr: Tensor) -> Tensor:
        # symmetric law: F(λ) = 1 − F(−λ); bisect on the side where u is small (precise)
        u = self._u_below(-logsnr.abs())
        return torch.where(logsnr > 0, 1.0 - u, u)

    def _icdf(self, u: Tensor) -> Tensor:
        return 2.0 * (torch.log(self._g(u)) - torch.log(self._g(1.0 - u)))

    def _log_pdf(self, logsnr: Tensor) -> Tensor:
        u = self._u_below(-logsnr.abs())  # g'(u) = g'(1 − u)
        log_t_1mt = -nn_f.softplus(-logsnr / 2.0) - nn_f.softplus(logsnr / 2.0)  # log t(1 − t)
        return log_t_1mt - math.log(2.0) - torch.log(self._dg(u))


@DENSITIES.register("cosmap", params=BOUNDS)
class CosmapDensity(CosineDensity):
    """SD3's CosMap (Esser et al. 2024, §3.1; OneTrainer's COS_MAP): rectified-flow time
    t = 1 − 1/(tan(πu/2) + 1), u ~ U(0, 1). Then t/(1 − t) = tan(πu/2) and λ = −2 logit t =
    −2 log tan(πu/2): the cosine schedule's λ for a uniform time (METHODS.md §5), so the density
    is the cosine one, named as the rectified-flow trainers name it."""


GRIDS: tuple[str, ...] = ("cosine", "linear", "karras")


def grid_levels(logsnrs: Tensor) -> list[float]:
    """A sampler grid as floats, checked: 1-D, at least 2 levels, strictly increasing."""
    if logsnrs.ndim != 1 or logsnrs.numel() < 2:
        raise ValueError(f"logsnrs must be 1-D with >= 2 levels, got shape {tuple(logsnrs.shape)}")
    levels = [float(v) for v in logsnrs]
    if any(b <= a for a, b in zip(levels[:-1], levels[1:], strict=True)):
        raise ValueError("logsnrs must be strictly increasing (noisiest first)")
    return levels


def logsnr_grid(
    kind: str, steps: int, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX
) -> Tensor:
    """Sampler grid: ``steps + 1`` increasing log-SNR levels, noisiest first.

    Args:
        kind: "cosine" (uniform in t of the cosine schedule), "linear" (uniform in λ) or
            "karras" (EDM's ρ = 7 spacing in s = exp(−λ/2), Karras et al. 2022 Eq. 5).
        steps: number of intervals (>= 1).
        logsnr_min: first (noisiest) level.
        logsnr_max: last (cleanest) level.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not logsnr_min < logsnr_max:
        raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min} >= {logsnr_max}")
    frac = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    lo, hi = float(logsnr_min), float(logsnr_max)
    if kind == "linear":
        lam = lo + frac * (hi - lo)
    elif kind == "cosine":
        # t = (2/π) atan(exp(−λ/2)); uniform in t, decreasing t <=> increasing λ
        t_lo, t_hi = ((2.0 / math.pi) * math.atan(math.exp(-v / 2.0)) for v in (hi, lo))
        t = t_hi + frac * (t_lo - t_hi)
        lam = -2.0 * torch.log(torch.tan(math.pi * t / 2.0))
    elif kind == "karras":
        rho = 7.0
        s_max, s_min = math.exp(-lo / 2.0), math.exp(-hi / 2.0)
        s = (s_max ** (1 / rho) + frac * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        lam = -2.0 * torch.log(s)
    else:
        raise ValueError(f"unknown grid {kind!r}; known: {', '.join(GRIDS)}")
    lam[0], lam[-1] = lo, hi
    return lam.to(torch.float32)
