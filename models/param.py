"""Conversions between ε-, x0-, v- and score-predictions at log-SNR λ (METHODS.md notation).

x = α x0 + σ ε, α² = sigmoid(λ), σ² = sigmoid(−λ); ``logsnr`` is (B,), one level per example.
"""

import torch
from torch import Tensor, nn

from models.schedules import alpha_sigma, bcast


def _ab(logsnr: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    alpha, sigma = alpha_sigma(logsnr)
    return bcast(alpha, like), bcast(sigma, like)


def add_noise(x0: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """x_λ = α x0 + σ ε."""
    alpha, sigma = _ab(logsnr, x0)
    return alpha * x0 + sigma * eps


def eps_to_x0(x: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """x̂0 = (x − σ ε̂)/α."""
    alpha, sigma = _ab(logsnr, x)
    return (x - sigma * eps) / alpha


def x0_to_eps(x: Tensor, x0: Tensor, logsnr: Tensor) -> Tensor:
    """ε̂ = (x − α x̂0)/σ."""
    alpha, sigma = _ab(logsnr, x)
    return (x - alpha * x0) / sigma


def eps_to_v(x: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """v = α ε − σ x0 (Salimans & Ho 2022) = (ε − σ x)/α."""
    alpha, sigma = _ab(logsnr, x)
    return alpha * eps - sigma * (x - sigma * eps) / alpha


def eps_to_score(x: Tensor, eps: Tensor, logsnr: Tensor) -> Tensor:
    """∇ log p_λ(x) = −ε̂/σ (Tweedie)."""
    _, sigma = _ab(logsnr, x)
    return -eps / sigma


class EpsModel(nn.Module):
    """Wraps a backbone ``backbone(x, c_noise) -> v`` as an ε-predictor ``forward(x, logsnr)``.

    The backbone never sees the parameterisation; it gets c_noise = λ/8, a well-scaled scalar
    per example (the role of EDM's c_noise preconditioning, Karras et al. 2022 Table 1).
    """

    def __init__(self, backbone: nn.Module, autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.autocast = autocast  # e.g. torch.bfloat16: the backbone runs under autocast

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        if logsnr.ndim == 0:
            logsnr = logsnr.expand(x.shape[0])
        # The backbone's output F is read as a v-prediction, so ε̂ = σ·x + α·F: at low SNR
        # ε̂ → x exactly and the implied x̂0 = α·x − σ·F stays bounded, which keeps the first
        # sampler steps (x̂0 divided by a tiny α) from amplifying the net's error.
        alpha, sigma = _ab(logsnr.to(x.dtype), x)
        c_noise = logsnr.to(x.dtype) / 8.0
        if self.autocast is None:
            return sigma * x + alpha * self.backbone(x, c_noise)
        with torch.autocast(device_type=x.device.type, dtype=self.autocast):
            out = self.backbone(x, c_noise)
        return sigma * x + alpha * out.to(x.dtype)  # the loss is computed in float32

    def x0(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return eps_to_x0(x, self(x, logsnr), logsnr)

    def v(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return eps_to_v(x, self(x, logsnr), logsnr)

    def score(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return eps_to_score(x, self(x, logsnr), logsnr)
