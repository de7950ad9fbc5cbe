"""The objective's terms as entries of models.objective.TERMS: one builder each, called with the
config keys its entry records (``params``) and the ``Parts`` already built; None turns it off.

Registration order is the order the terms are built and draw: the denoising term, the ambient
Tweedie objective in its place on noisy data, TIW-DSM reweighting whichever it is, then the
consistency and contrastive terms. Each entry's info names its ``switch`` (the config key that
turns it on) and its ``term`` class, whose ``requires`` and ``refuses`` tuner/config/spec.py
reads to refuse what does not compose. A new term is its class, its spec lines and one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.ambient import AmbientLoss, ConsistencyLoss
from models.cdl import CDLLoss
from models.discriminator import ConvDiscriminator, MLPDiscriminator
from models.losses import DenoiseLoss
from models.objective import TERMS, Term
from models.schedules import NoiseDensity
from models.tiw import TIWCorrection, TIWLoss
from models.weighting import Weighting


@dataclass
class Parts:
    """What a term's builder gets besides its config keys.

    Args:
        dataset: the trial's data (tuner.data.presets.Dataset).
        weighting, density, head: the denoising term's w(λ), q(λ) and EDM2 head (or None).
        disc: a pre-trained TIW discriminator to use instead of training a fresh one.
        terms: the terms built so far, by name (a builder may wrap or read one).
    """

    dataset: Any
    weighting: Weighting
    density: NoiseDensity
    head: nn.Module | None = None
    disc: nn.Module | None = None
    terms: dict[str, Term] = field(default_factory=dict)


def discriminator_for(dataset: Any) -> nn.Module:
    """A fresh TIW discriminator for the data's shape (an MLP for vectors, a conv net else)."""
    if len(dataset.shape) == 1:
        return MLPDiscriminator(dataset.shape[0])
    return ConvDiscriminator(dataset.shape[0])  # images: (channels, height, width)


@TERMS.register("denoise", term=DenoiseLoss)
def build_denoise(*, parts: Parts) -> DenoiseLoss:
    """The plain weighted ε-MSE (models/losses.py)."""
    return DenoiseLoss(parts.weighting, parts.density, parts.head)


@TERMS.register(
    "ambient", params={"tweedie": "ambient.tweedie"}, switch="ambient.tweedie", term=AmbientLoss
)
def build_ambient(*, tweedie: bool, parts: Parts) -> AmbientLoss | None:
    """The Tweedie objective on noisy data in the denoising term's place (None on clean data or
    with ambient.tweedie=false, i.e. naive denoising of the noisy data)."""
    sigma_n = parts.dataset.noise_sigma
    if not (sigma_n > 0 and tweedie):
        return None
    return AmbientLoss(sigma_n, parts.weighting, parts.density, parts.head)


@TERMS.register(
    "tiw",
    params={
        "strength": "tiw.strength",
        "mode": "tiw.mode",
        "clip": "tiw.clip",
        "steps": "tiw.disc_steps",
        "lr": "tiw.disc_lr",
        "batch": "tiw.disc_batch",
    },
    switch="tiw.strength",
    term=TIWLoss,
    # arguments that only use the trained discriminator: left out of its cache key
    # (tuner/training/discriminators.py), every other one is in it
    use_only=("strength", "mode", "clip"),
)
def build_tiw(
    *,
    strength: float,
    mode: str,
    clip: float,
    steps: int,
    lr: float,
    batch: int,
    parts: Parts,
) -> TIWLoss | None:
    """TIW-DSM around the denoising term, with a fresh discriminator (or ``parts.disc``, taken
    as trained); None when tiw.strength=0 (resolve() refused TIW on data without a reference)."""
    if strength == 0:
        return None
    given = parts.disc is not None
    disc = parts.disc if given else discriminator_for(parts.dataset)
    tiw = TIWCorrection(disc, strength, mode, clip, steps=steps, lr=lr, batch=batch, fitted=given)
    return TIWLoss(parts.terms["denoise"], tiw)


@TERMS.register(
    "consistency",
    params={
        "coef": "ambient.consistency",
        "chain_steps": "ambient.chain_steps",
        "gap": "ambient.gap",
        "logsnr_max": "noise.logsnr_max",
        "grid": "sampler.grid",  # the chains' end levels spread as the sampler's
    },
    switch="ambient.consistency",
    term=ConsistencyLoss,
)
def build_consistency(
    *, coef: float, chain_steps: int, gap: float, logsnr_max: float, grid: str, parts: Parts
) -> ConsistencyLoss | None:
    """The consistency term below the data's noise level (None when ambient.consistency=0;
    resolve() refused it without the Tweedie objective)."""
    if coef == 0:
        return None
    noise = parts.dataset.noise_sigma
    return ConsistencyLoss(noise, chain_steps, gap, logsnr_max, grid=grid, coef=coef)


@TERMS.register(
    "cdl",
    params={
        "coef": "cdl.coef",
        "zeta_loc": "cdl.zeta_loc",
        "zeta_scale": "cdl.zeta_scale",
        "zeta_min": "cdl.zeta_min",
        "zeta_max": "cdl.zeta_max",
        "mc_points": "cdl.mc_points",
        "fraction": "cdl.fraction",
        "logsnr_min": "noise.logsnr_min",
        "logsnr_max": "noise.logsnr_max",
    },
    switch="cdl.coef",
    term=CDLLoss,
)
def build_cdl(*, coef: float, parts: Parts, **options: Any) -> CDLLoss | None:
    """CDL with a Gaussian reference of the training data's moments (full covariance up to 1024
    dimensions, per-dimension variances above), its examples weighted by TIW's target weight
    when the denoising term is TIW-DSM; None when cdl.coef=0. `options`: the other keys of its
    entry, CDLLoss's keywords of the same names (ζ density, Monte-Carlo points, fraction,
    log-SNR bounds)."""
    if coef == 0:
        return None
    flat = parts.dataset.train.flatten(1)
    cov = torch.cov(flat.T) if flat.shape[1] <= 1024 else flat.var(0)
    tiw = parts.terms.get("denoise")
    weight = tiw.example_weight if isinstance(tiw, TIWLoss) else None
    return CDLLoss(flat.mean(0), cov, coef=coef, example_weight=weight, **options)
