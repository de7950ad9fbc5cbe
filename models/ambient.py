"""Training on noisy data: ambient Tweedie + consistency (Daras et al. 2024; METHODS.md §2).

The data are y = x0 + s_n·η (VE) with known s_n. In VP terms a VE level s is the log-SNR
λ = −2 log s and x_VP = x_VE/sqrt(1 + s²); the data themselves sit at λ_n = −2 log s_n.

Tweedie objective (Daras et al. 2024, Eq. 5), for s > s_n and ρ = s_n²/s² < 1:

    x_VE = y + sqrt(s² − s_n²)·ε,   J = ‖ρ·x_VE + (1 − ρ)·h_θ(x, s) − y‖²,

minimised by h = E[x0 | x_VE] (Tweedie's formula applied twice: E[y|x] = ρx + (1 − ρ)E[x0|x]).
Per-example scaling (our choice): with h = (x − σε̂)/α and s = σ/α,

    J / ((1 − ρ)² s²) = ‖ε̂(x, λ) − ε/sqrt(1 − ρ)‖²,

so the scaled J is an ε-MSE whose target is the noise inflated by 1/sqrt(1 − ρ), and its excess
over the minimum is exactly ‖ε̂ − ε*‖²: the weighting w(λ) keeps its meaning as a multiplier of
ε-MSE. The target's variance grows like 1/(1 − ρ) as s → s_n (where J stops depending on h), so
the loss is tapered by min(1, (1 − ρ)/margin): inside the margin the noise of the per-example
loss stays below 1/margin times that of plain ε-MSE, and the weight falls linearly to 0 at s_n.
"""

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from models.losses import DenoiseLoss
from models.param import add_noise, eps_to_x0
from models.schedules import (
    NoiseDensity,
    alpha_sigma,
    bcast,
    draw_device,
    logsnr_grid,
    randn_from,
)
from models.weighting import LogVarHead, Weighting

_MIN_KEEP = 1e-6  # floor of 1 − ρ (λ drawn in float64 may round onto λ_n in float32)


def ambient_logsnr_stop(sigma_n: float) -> float:
    """λ_n = −2 log s_n: the VP log-SNR of the data's own noise level (SNR = 1/s_n²)."""
    if not sigma_n > 0.0:
        raise ValueError(f"sigma_n must be > 0, got {sigma_n}")
    return -2.0 * math.log(sigma_n)


def _rho(sigma_n: float, logsnr: Tensor) -> Tensor:
    """ρ = s_n²/s² = s_n²·e^λ, computed in float64."""
    return (2.0 * math.log(sigma_n) + logsnr.to(torch.float64)).exp()


class AmbientLoss:
    """Tweedie objective on noisy data y at levels above the data's noise, as a weighted ε-MSE.

    Per example: ``w(λ) · min(1, (1 − ρ)/margin) · mean((ε̂ − ε/sqrt(1 − ρ))²)`` with
    x = α(y + s·sqrt(1 − ρ)·ε) and λ ~ q restricted to λ < λ_n (s > s_n). Equals
    ``w · taper · J / ((1 − ρ)² s² D)`` with J of Daras et al. 2024, Eq. 5 (module docstring).

    Args:
        sigma_n: s_n of the data (VE).
        weighting: w(λ), a multiplier of the per-example ε-MSE.
        density: q(λ); λ is drawn from q restricted to λ < λ_n by inverse CDF.
        logvar_head: optional EDM2 head (the loss becomes w/e^u · mse + u as in DenoiseLoss).
        margin: the taper width in 1 − ρ (0 < margin <= 1).
    """

    # an objective term (models/objective.py's Term): the denoising term on noisy data
    name = "denoise"
    coef = 1.0
    requires: ClassVar[dict[str, str]] = {"noisy": ""}
    refuses: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        sigma_n: float,
        weighting: Weighting,
        density: NoiseDensity,
        logvar_head: LogVarHead | nn.Module | None = None,
        margin: float = 0.1,
    ) -> None:
        if not 0.0 < margin <= 1.0:
            raise ValueError(f"ambient margin must be in (0, 1], got {margin}")
        self.sigma_n = float(sigma_n)
        self.logsnr_n = ambient_logsnr_stop(sigma_n)
        self.denoise = DenoiseLoss(weighting, density, logvar_head)
        self.density = density
        self.margin = float(margin)
        self._u_max = float(density.cdf(torch.tensor(self.logsnr_n, dtype=torch.float64)))
        if self._u_max <= 0.0:
            raise ValueError(
                f"the noise density's support [{density.logsnr_min}, {density.logsnr_max}] has "
                f"no level above the data noise s_n={sigma_n} (log-SNR {self.logsnr_n:.3f})"
            )

    def draw(self, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """λ ~ q(λ | λ < λ_n) by inverse CDF, then ε ~ N(0, I) (in that order)."""
        dev = draw_device(generator, y.device)
        u = torch.rand(y.shape[0], generator=generator, dtype=torch.float64, device=dev)
        logsnr = self.density.icdf(u * self._u_max).clamp(max=self.logsnr_n).to(y.device, y.dtype)
        return randn_from(generator, y), logsnr

    def _keep(self, logsnr: Tensor) -> Tensor:
        """1 − ρ, floored at a tiny positive value."""
        return (1.0 - _rho(self.sigma_n, logsnr)).clamp_min(_MIN_KEEP).to(logsnr.dtype)

    def noisy_input(self, y: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
        """The VP model input x = α·x_VE = α(y + sqrt(s² − s_n²)·ε)."""
        return add_noise(y, bcast(self._keep(logsnr).sqrt(), y) * eps, logsnr)

    def core(
        self,
        model: nn.Module,
        y: Tensor,
        eps: Tensor,
        logsnr: Tensor,
        weight: Tensor | None = None,
        eps_correction: Tensor | None = None,
    ) -> Tensor:
        """Deterministic per-example loss (B,); ``weight``/``eps_correction`` as in DenoiseLoss."""
        keep = self._keep(logsnr)
        root = bcast(keep.sqrt(), y)
        # x = add_noise(y, sqrt(1 − ρ)ε, λ); target ε/sqrt(1 − ρ) = sqrt(1 − ρ)ε − correction
        eps_in = root * eps
        correction = eps_in - eps / root
        if eps_correction is not None:
            correction = correction + eps_correction
        taper = (keep / self.margin).clamp(max=1.0)
        weight = taper if weight is None else taper * weight
        return self.denoise.core(model, y, eps_in, logsnr, weight, correction)

    @property
    def logsnr_stop(self) -> float:
        """The highest level this term trains: the data's own, λ_n (sampling stops there unless
        another term trains the levels above it)."""
        return self.logsnr_n

    def loss(self, model: nn.Module, y: Tensor, drawn: tuple[Tensor, Tensor]) -> Tensor:
        """``core`` at the noise and levels ``drawn`` by ``draw``."""
        eps, logsnr = drawn
        return self.core(model, y, eps, logsnr)

    def modules(self) -> dict[str, nn.Module]:
        """The EDM2 log-variance head, trained with the model (none without it)."""
        return self.denoise.modules()

    def __call__(self, model: nn.Module, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """Draw λ, ε from ``generator`` and return ``core`` (B,)."""
        return self.loss(model, y, self.draw(y, generator))

    def tweedie_objective(self, model: nn.Module, y: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
        """The unscaled J of Daras et al. 2024, Eq. 5, averaged over dimensions (B,)."""
        rho = bcast(_rho(self.sigma_n, logsnr).to(y.dtype), y)
        x = self.noisy_input(y, eps, logsnr)
        h = eps_to_x0(x, model(x, logsnr), logsnr)
        alpha, _ = alpha_sigma(logsnr)
        x_ve = x / bcast(alpha, x)
        return (rho * x_ve + (1.0 - rho) * h - y).square().flatten(1).mean(1)


def _ddpm_step(x: Tensor, x0: Tensor, lam_t: Tensor, lam_s: Tensor, noise: Tensor) -> Tensor:
    """One ancestral step from λ_t to λ_s >= λ_t, per example (VDM Eq. 33, as in sample_ddpm);
    the identity where λ_s = λ_t."""
    alpha_t, _ = alpha_sigma(lam_t)
    alpha_s, sigma_s = alpha_sigma(lam_s)
    r = torch.exp(lam_t - lam_s)
    one_minus_r = -torch.expm1(lam_t - lam_s)
    mean = bcast(alpha_s * one_minus_r, x) * x0 + bcast(alpha_s / alpha_t * r, x) * x
    return mean + bcast((sigma_s**2 * one_minus_r).clamp_min(0.0).sqrt(), x) * noise


_SPACING_STEPS = 1024  # the sampler spacing is tabulated on this many intervals and interpolated


class ConsistencyLoss:
    """Consistency below the data's noise level (Daras et al. 2024, §4; METHODS.md §2).

    The anchor is the data, x = α_n·y, an exact sample of level λ_n, and its x0-prediction
    h = h(x, λ_n) (trained by the Tweedie term). Two chains of the model's own ancestral sampler
    run from x, independently (same levels, fresh noise each), to x''₁, x''₂ at an end level λ'';
    with h'' the x0-prediction there, the loss

        (h(x''₁, λ'') − h) · (h(x''₂, λ'') − h)   (averaged over dimensions)

    is an unbiased estimate of ‖E[h(x'', λ'') | x] − h‖² (chains independent given x), which is
    zero for the clean posterior mean (the martingale property of E[x0 | x_λ] along the reverse
    process: exact for a posterior mean linear in x, as for Gaussian data, whatever the step
    sizes; up to the sampler's discretisation otherwise); it can be negative per example.

    Units. The paper adds this x0-space penalty to its x0-space J; here J is scaled to an ε-MSE
    (``AmbientLoss``), so by default (``units="eps"``) the consistency term is scaled the same
    way at its own level, by SNR(λ''): (ε̂''₁ − ε̃''₁)·(ε̂''₂ − ε̃''₂) with ε̃'' = (x'' − α'' h)/σ''
    the noise that h implies in x''. A coefficient then weighs it as it weighs a denoising ε-MSE,
    whereas in x0 units (``units="x0"``, the paper's form) a discrepancy at λ'' reaches ε̂ scaled
    by SNR(λ'')^−½ and the high levels barely train: measured on gaussian_noisy (coefficient 1,
    defaults, 2000 steps, bench/ambient_gaussian.py) the samples' relative error to the clean
    covariance is given there for both.

    Levels. The sampler walks every level from noise.logsnr_min up to ``logsnr_max`` once
    consistency is on, so the end levels must cover all of [λ_n, logsnr_max], not a band above
    λ_n (the public code likewise draws step differences down to t = 0): λ'' has the law of the
    sampler's own ``grid`` spacing restricted to [λ_n, logsnr_max] (cosine: uniform in t of the
    cosine schedule), so the chains end where the sampler spends its steps. With ``gap=0``
    (default: no cap) a chain's ``chain_steps`` steps split [λ_n, λ''] evenly in log-SNR. With
    ``gap`` > 0, each chain step raises λ by δ_j ~ U(0, gap] and the chain's k steps end at λ'':
    where they span less than λ'' − λ_n, the chain first moves from the data to its start
    λ'' − Σδ in one step of the same sampler with the anchor's prediction h (a transport step,
    so the ends still cover every level), where they span more, they are scaled to fit.

    Gradients flow only through h(x''₁), h(x''₂): the anchor and the chain steps are held fixed
    (no grad). The Tweedie objective carries no signal at s_n itself (J does not depend on h
    there), so letting the consistency term move the anchor too lets both drift together:
    measured on gaussian_noisy with the earlier chains that ended within k·gap of λ_n
    (coefficient 1, k=2, gap 4, 2000 steps) the anchor's coefficient in the 0.25-variance
    dimension fell from 0.54 to 0.39 (exact 0.5).
    Cost: 2k+1 forward passes (2 with gradients) with ``gap=0``, 2k+3 with a gap, plus the
    Tweedie term's one.

    Args:
        sigma_n: s_n of the data (VE).
        chain_steps: k, sampler steps per chain.
        gap: the largest log-SNR increment of one chain step; 0 = no cap.
        logsnr_max: the sampler's last level; the chains' end levels reach it.
        grid: the sampler grid's spacing ("cosine", "linear", "karras"; ``logsnr_grid``), whose
            law over [λ_n, logsnr_max] the end levels follow.
        units: "eps" (default: scaled by SNR(λ''), like the Tweedie term) or "x0" (the paper's).
        coef: its weight λ_cons in the objective's total.
    """

    # an objective term (models/objective.py's Term)
    name = "consistency"
    requires: ClassVar[dict[str, str]] = {
        "ambient": "the Tweedie objective it ties the lower levels to"
    }
    refuses: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        sigma_n: float,
        chain_steps: int = 1,
        gap: float = 0.0,
        logsnr_max: float = 15.0,
        *,
        grid: str = "cosine",
        units: str = "eps",
        coef: float = 1.0,
    ) -> None:
        if units not in ("eps", "x0"):
            raise ValueError(f"consistency units must be 'eps' or 'x0', got {units!r}")
        if chain_steps < 1:
            raise ValueError(f"consistency chain_steps must be >= 1, got {chain_steps}")
        if not gap >= 0.0:
            raise ValueError(f"consistency gap must be >= 0 (0 = no cap), got {gap}")
        self.sigma_n = float(sigma_n)
        self.logsnr_n = ambient_logsnr_stop(sigma_n)
        if not self.logsnr_n < logsnr_max:
            raise ValueError(
                f"data noise s_n={sigma_n} (log-SNR {self.logsnr_n:.3f}) leaves no level below it "
                f"under logsnr_max={logsnr_max}"
            )
        self.chain_steps = int(chain_steps)
        self.gap = float(gap)
        self.logsnr_max = float(logsnr_max)
        self.grid = grid
        self.units = units
        self.coef = float(coef)
        # the sampler's spacing over [λ_n, logsnr_max], tabulated (raises on an unknown grid)
        self._spacing = logsnr_grid(grid, _SPACING_STEPS, self.logsnr_n, self.logsnr_max).double()

    def end_levels(self, u: Tensor) -> Tensor:
        """λ'' for u in [0, 1]: the sampler grid's spacing over [λ_n, logsnr_max] (u = 0: λ_n)."""
        if self._spacing.device != u.device:  # the table follows the draws to their device
            self._spacing = self._spacing.to(u.device)
        pos = u.to(torch.float64) * _SPACING_STEPS
        i = pos.floor().clamp(0, _SPACING_STEPS - 1).long()
        frac = pos - i
        lam = self._spacing[i] + frac * (self._spacing[i + 1] - self._spacing[i])
        return lam.clamp(self.logsnr_n, self.logsnr_max).float()

    def levels(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """(k+2, n) levels per example: λ_n, the chain's start, then its k step ends (the last
        is λ''). Draws u for λ'' (n), then the increments (k, n) when ``gap`` > 0."""
        k, dev = self.chain_steps, draw_device(generator, device)
        end = self.end_levels(torch.rand(n, generator=generator, dtype=torch.float64, device=dev))
        lam_n = torch.full((n,), self.logsnr_n, device=dev)
        if self.gap == 0.0:
            start = lam_n
            frac = (torch.arange(1, k + 1, dtype=torch.float32, device=dev) / k)[:, None]
        else:
            u = torch.rand(k, n, generator=generator, device=dev)
            steps = self.gap * (1.0 - u)  # in (0, gap]
            span = steps.sum(0)
            start = torch.maximum(lam_n, end - span)
            frac = steps.cumsum(0) / span
        chain = start + frac * (end - start)
        chain[-1] = end
        return torch.cat([lam_n[None], start[None], chain]).to(device)

    def draw(self, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor, list[Tensor]]:
        """The levels (``levels``), then the noise of each ancestral step of the two chains
        (the transport step first when ``gap`` > 0), each (2B, ...)."""
        lam = self.levels(y.shape[0], generator, y.device).to(y.dtype)
        like = y.new_empty((2 * y.shape[0], *y.shape[1:]))  # the two chains side by side
        steps = self.chain_steps + (1 if self.gap > 0.0 else 0)
        return lam, [randn_from(generator, like) for _ in range(steps)]

    def loss(self, model: nn.Module, y: Tensor, drawn: tuple[Tensor, list[Tensor]]) -> Tensor:
        """Per-example two-chain consistency estimate (B,) at the levels and noises ``drawn``."""
        n = y.shape[0]
        lam, noises = drawn
        noise = iter(noises)
        lam0 = lam[0]
        x = y * bcast(alpha_sigma(lam0)[0], y)  # x_VP = y/sqrt(1 + s_n²)
        chain = torch.cat([x, x])  # two chains side by side in one batch of 2n
        with torch.no_grad():
            # the anchor h(x, λ_n) is held fixed: it is the Tweedie term's to learn
            h0 = eps_to_x0(x, model(x, lam0), lam0)
            x0_hat = torch.cat([h0, h0])
            if self.gap > 0.0:  # transport to the chain's start (identity where λ_n)
                lam_start = lam[1].repeat(2)
                chain = _ddpm_step(chain, x0_hat, lam0.repeat(2), lam_start, next(noise))
                x0_hat = eps_to_x0(chain, model(chain, lam_start), lam_start)
            for j in range(2, self.chain_steps + 2):
                lam_t, lam_s = lam[j - 1].repeat(2), lam[j].repeat(2)
                chain = _ddpm_step(chain, x0_hat, lam_t, lam_s, next(noise))
                if j < self.chain_steps + 1:
                    x0_hat = eps_to_x0(chain, model(chain, lam_s), lam_s)
        lam_end = lam[-1].repeat(2)
        eps_end = model(chain, lam_end)
        if self.units == "x0":
            d = eps_to_x0(chain, eps_end, lam_end) - torch.cat([h0, h0])  # h'' − h
        else:  # ε̂'' − ε̃'' with ε̃'' = (x'' − α'' h)/σ'': SNR''^½ (h − h''), computed stably
            a, s = alpha_sigma(lam_end)
            d = eps_end - (chain - bcast(a, chain) * torch.cat([h0, h0])) / bcast(s, chain)
        # two independent chains: E[(h''₁ − h)(h''₂ − h) | x] = ‖E[h''|x] − h‖²
        return (d[:n] * d[n:]).flatten(1).mean(1)

    def modules(self) -> dict[str, nn.Module]:
        """None: the term has no learned part of its own."""
        return {}

    def __call__(self, model: nn.Module, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """Per-example two-chain consistency estimate (B,); draws levels then chain noise."""
        return self.loss(model, y, self.draw(y, generator))
