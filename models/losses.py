"""The weighted denoising loss L = E_{x0, λ~q, ε}[w(λ) ‖ε̂(x_λ, λ) − ε‖²] (METHODS.md),
as a small callable returning per-example losses (the caller reduces)."""

from typing import ClassVar

import torch
from torch import Tensor, nn

from models.param import add_noise
from models.schedules import NoiseDensity, randn_from
from models.weighting import LogVarHead, Weighting


class DenoiseLoss:
    """Per-example weighted ε-MSE, optionally with EDM2's learned log-variance head.

    Args:
        weighting: w(λ), a multiplier of the per-example ε-MSE.
        density: q(λ), where training noise levels are drawn from.
        logvar_head: optional ``LogVarHead``; the loss becomes w/e^u · mse + u
            (Karras et al. 2024, EDM2 Eq. 21).
    """

    # an objective term (models/objective.py's Term): logged as loss/denoise, weight 1
    name = "denoise"
    coef = 1.0
    requires: ClassVar[dict[str, str]] = {}
    refuses: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        weighting: Weighting,
        density: NoiseDensity,
        logvar_head: LogVarHead | nn.Module | None = None,
    ) -> None:
        self.weighting = weighting
        self.density = density
        self.logvar_head = logvar_head

    def core(
        self,
        model: nn.Module,
        x0: Tensor,
        eps: Tensor,
        logsnr: Tensor,
        weight: Tensor | None = None,
        eps_correction: Tensor | None = None,
    ) -> Tensor:
        """Deterministic per-example loss (B,) for given x0, ε and λ.

        Args:
            model: ε-predictor ``model(x, logsnr) -> eps_hat``.
            x0: clean data (B, ...).
            eps: the noise (B, ...).
            logsnr: (B,) levels.
            weight: optional per-example extra weight (B,), e.g. a density ratio r^a (TIW-DSM).
            eps_correction: optional target shift; the target is ε − eps_correction
                (TIW-DSM: σ·a·∇ₓ log r).
        """
        eps_hat = model(self.noisy_input(x0, eps, logsnr), logsnr)
        target = eps if eps_correction is None else eps - eps_correction
        mse = (eps_hat - target).square().flatten(1).mean(1)
        w = self.weighting(logsnr).to(mse.dtype)
        if weight is not None:
            w = w * weight
        if self.logvar_head is None:
            return w * mse
        u = self.logvar_head(logsnr)
        return w * torch.exp(-u) * mse + u

    def draw(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """ε ~ N(0, I) and λ ~ q for a batch, drawn from ``generator`` (λ first, then ε) on the
        generator's device and moved to the data's."""
        logsnr = self.density.sample(x0.shape[0], generator).to(x0.device, x0.dtype)
        return randn_from(generator, x0), logsnr

    def noisy_input(self, x0: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
        """The model input x_λ = α x0 + σ ε."""
        return add_noise(x0, eps, logsnr)

    def loss(self, model: nn.Module, x0: Tensor, drawn: tuple[Tensor, Tensor]) -> Tensor:
        """``core`` at the noise and levels ``drawn`` by ``draw``."""
        eps, logsnr = drawn
        return self.core(model, x0, eps, logsnr)

    def modules(self) -> dict[str, nn.Module]:
        """The EDM2 log-variance head, trained with the model (none without it)."""
        return {} if self.logvar_head is None else {"logvar_head": self.logvar_head}

    def __call__(self, model: nn.Module, x0: Tensor, generator: torch.Generator) -> Tensor:
        """``core`` at the levels and noise of ``draw``."""
        return self.loss(model, x0, self.draw(x0, generator))
