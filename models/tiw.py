"""Time-dependent importance reweighting, TIW-DSM (Kim et al. 2024; METHODS.md §3).

The score loss on the biased (observed) data, Kim et al. 2024 Eq. 11,

    E_obs [ r(x_λ,λ) · ‖ s_θ − ∇log p(x_λ|x0) − ∇log r(x_λ,λ) ‖² ],   r = p_ref,λ / p_obs,λ,

is, with s_θ = −ε̂/σ and ∇log p(x_λ|x0) = −ε/σ, the ε-loss with per-example weight r and target
ε − σ·∇ₓ log r. Its minimiser is E_obs[ε|x_λ] − σ∇log r = −σ∇log p_obs,λ − σ∇log(p_ref,λ/p_obs,λ)
= −σ∇log p_ref,λ: the reference (unbiased) ε-prediction. Tempered by the strength a:
weight r^a, correction a·∇log r (a = 0: plain denoising of the observed data; a = 1: TIW-DSM).

Unlike the public code this uses per-example weights (not a batch scalar) and subtracts
σ·a·∇log r from the target (the public code adds it, without the 1/d factor).
"""

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from models.ambient import AmbientLoss
from models.discriminator import train_discriminator
from models.losses import DenoiseLoss
from models.schedules import NoiseDensity, alpha_sigma, bcast

MODES: tuple[str, ...] = ("full", "weight", "correction")


class TIWCorrection:
    """Per-example weight r^a and ε-target shift σ·a·∇ₓ log r from a discriminator.

    ``loss = DenoiseLoss.core(model, x0, eps, logsnr, weight, eps_correction)`` with
    ``weight, eps_correction = tiw(x_t, logsnr)`` is the (tempered) TIW-DSM loss.

    Args:
        disc: ``disc(x, logsnr) -> logit (B,)``; d = sigmoid(logit).
        strength: a >= 0 (0 = off, 1 = TIW-DSM).
        mode: "full" (weight and correction), "weight" (r^a only), "correction" (target shift
            only) — the paper's ablation.
        clip: d is clipped to [clip, 1 − clip], i.e. |log r| <= log((1 − clip)/clip); the
            gradient is zero where clipped.
        steps, lr, batch: discriminator pre-training (``fit``).
        fitted: whether ``disc`` is already trained (a pre-trained one, then put in eval mode);
            ``fit`` sets it, and so does loading a trial's checkpoint.
    """

    def __init__(
        self,
        disc: nn.Module,
        strength: float,
        mode: str = "full",
        clip: float = 1e-5,
        *,
        steps: int = 1500,
        lr: float = 2e-3,
        batch: int = 256,
        fitted: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown TIW mode {mode!r}; known: {', '.join(MODES)}")
        if strength < 0.0:
            raise ValueError(f"TIW strength must be >= 0, got {strength}")
        if not 0.0 < clip < 0.5:
            raise ValueError(f"TIW clip must be in (0, 0.5), got {clip}")
        self.disc = disc.requires_grad_(False)  # frozen; fit() trains it
        self.strength = float(strength)
        self.mode = mode
        self.clip = float(clip)
        self.steps, self.lr, self.batch = int(steps), float(lr), int(batch)
        self.fitted = bool(fitted)
        if self.fitted:
            self.disc.eval()

    def log_ratio(self, x_t: Tensor, logsnr: Tensor) -> Tensor:
        """log r = log d − log(1 − d) = the logit, with d clipped to [clip, 1 − clip]."""
        bound = math.log((1.0 - self.clip) / self.clip)
        return self.disc(x_t, logsnr).clamp(-bound, bound)

    def target_weight(self, x_t: Tensor, logsnr: Tensor) -> Tensor:
        """The importance weight (B,), detached, that turns the observed law into the one this
        objective targets: r^a where the correction is on (modes full and correction: the
        score's optimum moves to ∇log(p_obs·r^a)), 1 in weight-only mode, whose weight of x_λ
        alone leaves the optimum at the observed law (METHODS.md §3)."""
        if self.mode == "weight" or self.strength == 0.0:
            return torch.ones_like(logsnr)
        with torch.no_grad():
            return torch.exp(self.strength * self.log_ratio(x_t, logsnr))

    def __call__(self, x_t: Tensor, logsnr: Tensor) -> tuple[Tensor, Tensor]:
        """Weight (B,) and ε-correction (like x_t) at x_t = α x0 + σ ε; both detached."""
        a = self.strength
        use_weight = self.mode in ("full", "weight") and a != 0.0
        use_corr = self.mode in ("full", "correction") and a != 0.0
        if not (use_weight or use_corr):
            return torch.ones_like(logsnr), torch.zeros_like(x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            log_r = self.log_ratio(x, logsnr.detach())
            grad = torch.autograd.grad(log_r.sum(), x)[0] if use_corr else None
        log_r = log_r.detach()
        weight = torch.exp(a * log_r) if use_weight else torch.ones_like(log_r)
        if grad is None:
            return weight, torch.zeros_like(x_t)
        _, sigma = alpha_sigma(logsnr)
        # Kim et al. 2024 Eq. 11 in ε-terms: target ε − σ·a·∇ₓ log r
        return weight, (bcast(sigma, x_t) * a * grad).detach()

    def fit(
        self,
        observed: Tensor,
        reference: Tensor,
        density: NoiseDensity,
        generator: torch.Generator,
    ) -> dict[str, float]:
        """Pre-train the discriminator (reference = 1, observed = 0); returns its metrics."""
        metrics = train_discriminator(
            self.disc,
            observed,
            reference,
            density,
            steps=self.steps,
            lr=self.lr,
            batch=self.batch,
            generator=generator,
        )
        self.fitted = True
        return metrics


class TIWLoss:
    """TIW-DSM as an objective term: a denoising term (plain, or ambient Tweedie on noisy data)
    with its own draws, weighted by r^a at its model input and with its ε-target shifted by
    σ·a·∇ₓ log r (Kim et al. 2024, Eq. 11). It replaces that term, under its name, and holds
    the discriminator, pre-trained before step 0 (``tiw.fitted``).

    Args:
        base: the denoising term it reweights (its ``draw``, ``noisy_input`` and ``core``).
        tiw: the weight and correction from the discriminator.
    """

    coef = 1.0
    requires: ClassVar[dict[str, str]] = {"reference": ""}
    refuses: ClassVar[dict[str, str]] = {}

    def __init__(self, base: DenoiseLoss | AmbientLoss, tiw: TIWCorrection) -> None:
        self.base, self.tiw = base, tiw
        self.name = base.name

    @property
    def logsnr_stop(self) -> float | None:
        """The highest level the base term trains (None: every level)."""
        return getattr(self.base, "logsnr_stop", None)

    def draw(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The base term's draws."""
        return self.base.draw(x0, generator)

    def loss(self, model: nn.Module, x0: Tensor, drawn: tuple[Tensor, Tensor]) -> Tensor:
        """The base term's ``core`` with the TIW weight and correction at its model input."""
        eps, logsnr = drawn
        weight, correction = self.tiw(self.base.noisy_input(x0, eps, logsnr), logsnr)
        return self.base.core(model, x0, eps, logsnr, weight, correction)

    def example_weight(self, x0: Tensor) -> Tensor:
        """The weight (B,) of each clean example under the law TIW targets: ``target_weight``
        at the density's cleanest level, where the correction is on (for CDL, METHODS.md §4)."""
        clean = torch.full((x0.shape[0],), float(self.base.density.logsnr_max), device=x0.device)
        return self.tiw.target_weight(x0, clean)

    def modules(self) -> dict[str, nn.Module]:
        """The base term's learned parts and the discriminator (frozen after pre-training)."""
        return self.base.modules() | {"discriminator": self.tiw.disc}
