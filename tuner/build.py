"""Factories that turn a flat configuration into objects, through explicit registries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.losses import DenoiseLoss
from models.nets import MLP, UNet
from models.param import EpsModel
from models.samplers import SAMPLERS
from models.schedules import DENSITIES, NoiseDensity, logsnr_grid
from models.weighting import (
    EDM,
    P2,
    X0,
    Constant,
    Debiased,
    LogVarHead,
    MinSNR,
    Normalized,
    Parametric,
    Sigmoid,
    Weighting,
)
from tuner.config import ConfigError
from tuner.data import Dataset, load_dataset

Config = dict[str, Any]


def build_dataset(config: Config) -> Dataset:
    return load_dataset(
        config["data"],
        seed=config["seed"],
        root=config["data.root"],
        download=config["data.download"],
        size=config["data.size"],
    )


def build_net(config: Config, dataset: Dataset) -> EpsModel:
    name = config["net"]
    if name == "auto":
        name = "mlp" if dataset.kind == "lowdim" else "unet"
    width, depth = config["net.width"], config["net.depth"]
    if name == "mlp":
        if len(dataset.shape) != 1:
            raise ConfigError(
                f"net=mlp needs low-dimensional data; data={config['data']} is images"
            )
        backbone: nn.Module = MLP(dataset.shape[0], width=width or 256, depth=depth or 3)
    elif name == "unet":
        if len(dataset.shape) != 3:
            raise ConfigError(
                f"net=unet needs image data; data={config['data']} is low-dimensional"
            )
        levels = depth or 2
        side = dataset.shape[-1]
        if side % 2 ** (levels - 1):
            raise ConfigError(f"net.depth={levels} levels do not divide an image side of {side}")
        backbone = UNet(dataset.shape[0], width=width or 32, levels=levels)
    else:  # config.resolve has checked the name
        raise ConfigError(f"unknown net {name!r}; known: auto, mlp, unet")
    return EpsModel(backbone)


def build_density(config: Config) -> NoiseDensity:
    name = config["noise"]
    bounds = {"logsnr_min": config["noise.logsnr_min"], "logsnr_max": config["noise.logsnr_max"]}
    if name == "logistic":
        return DENSITIES[name](**bounds, loc=config["noise.loc"], scale=config["noise.scale"])
    return DENSITIES[name](**bounds)


# Every weighting of METHODS.md's table, built from the flat config. "learned" is EDM2: the
# EDM weighting with a learned u(λ) head (the head itself is built by build_logvar_head).
WEIGHTING_BUILDERS: dict[str, Callable[[Config, NoiseDensity], Weighting]] = {
    "constant": lambda c, q: Constant(),
    "debiased": lambda c, q: Debiased(snr_max=c["weighting.snr_max"]),
    "x0": lambda c, q: X0(snr_max=c["weighting.snr_max"]),
    "p2": lambda c, q: P2(
        k=c["weighting.k"], gamma=c["weighting.gamma"], snr_max=c["weighting.snr_max"]
    ),
    "min_snr": lambda c, q: MinSNR(gamma=c["weighting.gamma"], snr_max=c["weighting.snr_max"]),
    "edm": lambda c, q: EDM(sigma_data=c["weighting.sigma_data"], snr_max=c["weighting.snr_max"]),
    "sigmoid": lambda c, q: Sigmoid(bias=c["weighting.bias"], density=q),
    "parametric": lambda c, q: Parametric(
        p=c["weighting.p"],
        k=c["weighting.k"],
        clamp=c["weighting.clamp"],
        snr_max=c["weighting.snr_max"],
    ),
    "learned": lambda c, q: EDM(
        sigma_data=c["weighting.sigma_data"], snr_max=c["weighting.snr_max"]
    ),
}


def build_weighting(config: Config, density: NoiseDensity) -> Weighting:
    weighting = WEIGHTING_BUILDERS[config["weighting"]](config, density)
    if config["weighting.normalize"]:
        weighting = Normalized(weighting, density)
    return weighting


def build_logvar_head(config: Config) -> LogVarHead | None:
    if config["weighting"] == "learned" or config["weighting.learned"]:
        return LogVarHead()
    return None


def build_objective(
    config: Config,
    dataset: Dataset,
    weighting: Weighting,
    density: NoiseDensity,
    logvar_head: LogVarHead | None,
) -> Any:
    """The training objective: plain denoising, composed with TIW, ambient and CDL terms.

    Noisy data (``dataset.noise_sigma > 0``) get the ambient Tweedie objective when
    ``ambient.tweedie`` (else naive denoising of the noisy data), plus the consistency term when
    ``ambient.consistency > 0``; ``tiw.strength > 0`` needs a reference set; ``cdl.coef > 0``
    adds CDL with a Gaussian reference of the training data's moments (full covariance up to
    1024 dimensions, per-dimension variances above).
    """
    from models.ambient import AmbientLoss, ConsistencyLoss
    from models.cdl import CDLLoss
    from models.discriminator import ConvDiscriminator, MLPDiscriminator
    from models.objective import Objective
    from models.tiw import TIWCorrection

    tiw = None
    if config["tiw.strength"] > 0:
        if dataset.reference is None:
            raise ConfigError(
                f"tiw.strength={config['tiw.strength']:g} needs a dataset with a reference set; "
                f"data={config['data']} has none (use bimodal_biased or digits_biased)"
            )
        lowdim = len(dataset.shape) == 1
        disc = MLPDiscriminator(dataset.shape[0]) if lowdim else ConvDiscriminator(dataset.shape[0])
        tiw = TIWCorrection(
            disc,
            config["tiw.strength"],
            config["tiw.mode"],
            config["tiw.clip"],
            steps=config["tiw.disc_steps"],
            lr=config["tiw.disc_lr"],
            batch=config["tiw.disc_batch"],
        )
    ambient = consistency = None
    tweedie = dataset.noise_sigma > 0 and config["ambient.tweedie"]
    if config["ambient.consistency"] > 0 and not tweedie:
        raise ConfigError(
            f"ambient.consistency={config['ambient.consistency']:g} needs noisy data "
            f"(data={config['data']} has noise_sigma={dataset.noise_sigma:g}) "
            "and ambient.tweedie=true"
        )
    if tweedie:
        ambient = AmbientLoss(dataset.noise_sigma, weighting, density, logvar_head)
        if config["ambient.consistency"] > 0:
            consistency = ConsistencyLoss(
                dataset.noise_sigma,
                config["ambient.chain_steps"],
                config["ambient.gap"],
                logsnr_max=config["noise.logsnr_max"],
            )
    cdl = None
    if config["cdl.coef"] > 0:
        flat = dataset.train.flatten(1)
        cov = torch.cov(flat.T) if flat.shape[1] <= 1024 else flat.var(0)
        cdl = CDLLoss(
            flat.mean(0),
            cov,
            zeta_loc=config["cdl.zeta_loc"],
            zeta_scale=config["cdl.zeta_scale"],
            zeta_min=config["cdl.zeta_min"],
            zeta_max=config["cdl.zeta_max"],
            mc_points=config["cdl.mc_points"],
            fraction=config["cdl.fraction"],
            logsnr_min=config["noise.logsnr_min"],
            logsnr_max=config["noise.logsnr_max"],
        )
    return Objective(
        DenoiseLoss(weighting, density, logvar_head),
        tiw=tiw,
        ambient=ambient,
        consistency=consistency,
        consistency_coef=config["ambient.consistency"],
        cdl=cdl,
        cdl_coef=config["cdl.coef"],
    )


def build_sampler(
    config: Config, logsnr_stop: float | None = None
) -> tuple[Callable, torch.Tensor]:
    """The evaluation sampler and its log-SNR grid (stopping early at `logsnr_stop` if given)."""
    top = (
        config["noise.logsnr_max"]
        if logsnr_stop is None
        else min(logsnr_stop, config["noise.logsnr_max"])
    )
    grid = logsnr_grid(
        config["sampler.grid"], config["sampler.steps"], config["noise.logsnr_min"], top
    )
    name = config["sampler"]
    if name == "picard":
        from models.picard import sample_picard

        return sample_picard, grid
    return SAMPLERS[name], grid
