"""Factories that turn a flat configuration into objects, through explicit registries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from models.nets import NETS
from models.objective import TERMS, Objective
from models.param import EpsModel
from models.samplers import SAMPLERS
from models.schedules import DENSITIES, NoiseDensity, logsnr_grid
from models.weighting import WEIGHTINGS, LogVarHead, Normalized, Weighting
from tuner.config.spec import ConfigError
from tuner.config.terms import Parts
from tuner.data.presets import Dataset, load_dataset

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
        name = next(n for n in NETS if NETS.entry(n).info["kind"] == dataset.kind)
    entry = NETS.entry(name)
    if entry.info["kind"] != dataset.kind:
        shape = "images" if dataset.kind == "image" else "low-dimensional"
        raise ConfigError(
            f"net={name} needs {entry.info['kind']} data; data={config['data']} is {shape}"
        )
    args = {arg: config[key] or entry.info["zero"][arg] for arg, key in entry.params.items()}
    if name == "unet" and dataset.shape[-1] % 2 ** (args["levels"] - 1):
        raise ConfigError(
            f"net.depth={args['levels']} levels do not divide an image side of {dataset.shape[-1]}"
        )
    return EpsModel(entry.obj(dataset.shape[0], **args))


def build_density(config: Config) -> NoiseDensity:
    return DENSITIES.build(config["noise"], config)


def build_weighting(config: Config, density: NoiseDensity) -> Weighting:
    name = config["weighting"]
    needs_density = WEIGHTINGS.entry(name).info.get("needs_density", False)
    weighting = WEIGHTINGS.build(name, config, **({"density": density} if needs_density else {}))
    if config["weighting.normalize"]:
        weighting = Normalized(weighting, density)
    return weighting


def build_logvar_head(config: Config) -> LogVarHead | None:
    if config["weighting.learned"]:
        return LogVarHead()
    return None


def build_objective(
    config: Config,
    dataset: Dataset,
    weighting: Weighting | None = None,
    density: NoiseDensity | None = None,
    *,
    disc: torch.nn.Module | None = None,
) -> Objective:
    """The training objective: every registered term (tuner/config/terms.py) that the config
    turns on, built in registration order (models/objective.py sums them).

    Args:
        config: a resolved configuration.
        dataset: the trial's data.
        weighting, density: the denoising term's w(λ) and q(λ) (default: built from config).
        disc: a pre-trained TIW discriminator, used as trained (default: a fresh one).
    """
    density = build_density(config) if density is None else density
    weighting = build_weighting(config, density) if weighting is None else weighting
    parts = Parts(dataset, weighting, density, build_logvar_head(config), disc)
    for name in TERMS:
        term = TERMS.build(name, config, parts=parts)
        if term is not None:
            parts.terms[term.name] = term
    return Objective(parts.terms.values())


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
    return SAMPLERS[config["sampler"]], grid
