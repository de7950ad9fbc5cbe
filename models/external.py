"""A denoiser of the user's own (``net=python:PACKAGE.MODULE:FACTORY``) wrapped as an ε-predictor.

The user's module takes ``(x, noise)`` in its own convention and predicts one of ε, v, x0 or the
rectified-flow velocity; ``ExternalEpsModel`` turns the project's ``(x_λ, λ)`` into that input and
the prediction back into ε̂, so every objective, sampler and metric works unchanged (edm's
``EDMPrecond`` role; METHODS.md notation: x_λ = α x0 + σ ε, α² = sigmoid(λ), σ² = sigmoid(−λ)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.param import EpsModel
from models.schedules import alpha_sigma, bcast

# What the module predicts: ε; v = α ε − σ x0 (Salimans & Ho 2022); x0; or the rectified-flow
# velocity u = ε − x0 (SD3, Flux), whose input is x_t = (1 − t) x0 + t ε = x_λ/(α + σ).
PREDICTIONS = ("eps", "v", "x0", "flow")
# How it takes its noise level: λ itself; EDM's σ = e^(−λ/2) (SNR = 1/σ²); or a diffusers-style
# timestep 1000·t in (0, 1000), t = sigmoid(−λ/2) the rectified-flow time (0 clean, 1 noise).
NOISE_INPUTS = ("logsnr", "sigma", "timestep")
TIMESTEPS = 1000.0


def noise_value(logsnr: Tensor, noise_input: str) -> Tensor:
    """The noise level as the module takes it (see NOISE_INPUTS)."""
    if noise_input == "logsnr":
        return logsnr
    if noise_input == "sigma":
        return torch.exp(-logsnr / 2.0)
    if noise_input == "timestep":
        return TIMESTEPS * torch.sigmoid(-logsnr / 2.0)
    raise ValueError(f"unknown noise input {noise_input!r}; known: {', '.join(NOISE_INPUTS)}")


def output_tensor(out: object) -> Tensor:
    """A module's output as a tensor: the tensor itself, a diffusers output's ``.sample``, or the
    first element of a tuple (diffusers' ``return_dict=False``)."""
    if isinstance(out, Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"the net returned {type(out).__name__}, not a tensor")


def to_eps(out: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, prediction: str) -> Tensor:
    """ε̂ from a prediction of the given type at x = x_λ (α, σ broadcast against x)."""
    if prediction == "eps":
        return out
    if prediction == "v":  # v = α ε − σ x0  =>  ε = σ x + α v
        return sigma * x + alpha * out
    if prediction == "x0":  # ε = (x − α x0)/σ
        return (x - alpha * out) / sigma
    if prediction == "flow":  # x = α(ε − u) + σ ε  =>  ε = (x + α u)/(α + σ)
        return (x + alpha * out) / (alpha + sigma)
    raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")


class ExternalEpsModel(EpsModel):
    """Wraps a user module ``net(x_in, noise) -> prediction`` as ``forward(x, logsnr) -> ε̂``.

    Args:
        backbone: the user's module (its parameters, buffers and state dict are the model's).
        prediction: what it predicts, one of PREDICTIONS.
        noise_input: how it takes its noise level, one of NOISE_INPUTS.
        autocast: e.g. torch.bfloat16: the module runs under autocast, ε̂ stays float32.
    """

    def __init__(
        self,
        backbone: nn.Module,
        prediction: str,
        noise_input: str,
        autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__(backbone, autocast)
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")
        if noise_input not in NOISE_INPUTS:
            known = ", ".join(NOISE_INPUTS)
            raise ValueError(f"unknown noise input {noise_input!r}; known: {known}")
        self.prediction = prediction
        self.noise_input = noise_input

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        if logsnr.ndim == 0:
            logsnr = logsnr.expand(x.shape[0])
        logsnr = logsnr.to(x.dtype)
        alpha, sigma = (bcast(v, x) for v in alpha_sigma(logsnr))
        x_in = x / (alpha + sigma) if self.prediction == "flow" else x
        noise = noise_value(logsnr, self.noise_input)
        if self.autocast is None:
            out = output_tensor(self.backbone(x_in, noise))
        else:
            with torch.autocast(device_type=x.device.type, dtype=self.autocast):
                out = output_tensor(self.backbone(x_in, noise))
        return to_eps(out.to(x.dtype), x, alpha, sigma, self.prediction)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction}, noise_input={self.noise_input}"
