"""Factories that turn a flat configuration into objects, through explicit registries."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.external import (
    NOISE_INPUTS,
    PREDICTIONS,
    ExternalEpsModel,
    noise_value,
    output_tensor,
)
from models.losses import DenoiseLoss
from models.nets import NETS
from models.param import EpsModel
from models.samplers import SAMPLERS
from models.schedules import DENSITIES, NoiseDensity, logsnr_grid
from models.weighting import WEIGHTINGS, LogVarHead, Normalized, Weighting
from tuner.config.spec import NET_PREFIX, ConfigError
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
    if name.startswith(NET_PREFIX):
        return build_external_net(config, dataset.shape)
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


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load_factory(path: str) -> Callable[..., Any]:
    """The factory that net=python:MODULE:FACTORY names. The project's one import by string (the
    documented exception to its explicit registries): importlib here, nowhere else."""
    module_name, _, attr = path.removeprefix(NET_PREFIX).rpartition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - whatever the import raises, the path is unusable
        raise ConfigError(f"net={path}: cannot import {module_name} ({_one_line(e)})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"net={path}: module {module_name} has no function {attr}")
    return factory


def _declared(config: Config, module: nn.Module, what: str, allowed: tuple[str, ...]) -> str:
    """net.prediction / net.noise_input: the config key, else (auto) the module's attribute."""
    key = f"net.{what}"
    value = config[key] if config[key] != "auto" else getattr(module, what, None)
    if value not in allowed:
        got = "declares none" if value is None else f"declares {what}={value!r}"
        raise ConfigError(
            f"net={config['net']}: the module {got}; set {key} to one of {', '.join(allowed)} "
            f"or give the module a `{what}` attribute"
        )
    return value


def _probe(model: ExternalEpsModel, path: str, shape: tuple[int, ...]) -> None:
    """One forward pass of the module on a batch of 2 at λ = 0: it must return x's shape."""
    x = torch.zeros(2, *shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            noise = noise_value(torch.zeros(2), model.noise_input)
            out = output_tensor(model.backbone(x, noise))
    except Exception as e:  # noqa: BLE001 - any failure of the user's forward is reported alike
        raise ConfigError(
            f"net={path}: its forward pass on a batch of shape {tuple(x.shape)} failed "
            f"({_one_line(e)})"
        ) from None
    finally:
        model.train(was_training)
    if out.shape != x.shape:
        raise ConfigError(
            f"net={path}: it returned shape {tuple(out.shape)} for input {tuple(x.shape)}; a net "
            "must return a tensor of its input's shape"
        )


def build_external_net(config: Config, shape: tuple[int, ...]) -> ExternalEpsModel:
    """A net of the user's own, wrapped as an ε-predictor (models/external.py) and checked: the
    factory imports, returns a torch.nn.Module, declares its prediction and noise input, and maps
    a batch to its own shape. Every failure is one ConfigError line."""
    path = config["net"]
    factory = load_factory(path)
    try:
        module = factory(tuple(shape), width=config["net.width"], depth=config["net.depth"])
    except Exception as e:  # noqa: BLE001 - the user's factory may raise anything
        raise ConfigError(
            f"net={path}: the factory failed for examples of shape {tuple(shape)} ({_one_line(e)})"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"net={path}: the factory returned {type(module).__name__}, not a torch.nn.Module"
        )
    prediction = _declared(config, module, "prediction", PREDICTIONS)
    noise_input = _declared(config, module, "noise_input", NOISE_INPUTS)
    model = ExternalEpsModel(module, prediction, noise_input)
    _probe(model, path, tuple(shape))
    return model


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


def build_tiw(config: Config, dataset: Dataset) -> Any:
    """TIW-DSM's weight and correction from a fresh discriminator (None when tiw.strength=0)."""
    from models.discriminator import ConvDiscriminator, MLPDiscriminator
    from models.tiw import TIWCorrection

    if config["tiw.strength"] == 0:  # resolve() refused TIW on data without a reference set
        return None
    lowdim = len(dataset.shape) == 1
    disc = MLPDiscriminator(dataset.shape[0]) if lowdim else ConvDiscriminator(dataset.shape[0])
    return TIWCorrection(
        disc,
        config["tiw.strength"],
        config["tiw.mode"],
        config["tiw.clip"],
        steps=config["tiw.disc_steps"],
        lr=config["tiw.disc_lr"],
        batch=config["tiw.disc_batch"],
    )


def build_ambient(
    config: Config, dataset: Dataset, weighting: Weighting, density: NoiseDensity, head: Any
) -> tuple[Any, Any]:
    """The Tweedie objective and the consistency term on noisy data (None, None on clean data
    or with ambient.tweedie=false, i.e. naive denoising of the noisy data)."""
    from models.ambient import AmbientLoss, ConsistencyLoss

    # resolve() refused consistency without the Tweedie objective, and CDL with it
    if not (dataset.noise_sigma > 0 and config["ambient.tweedie"]):
        return None, None
    consistency = None
    if config["ambient.consistency"] > 0:
        consistency = ConsistencyLoss(
            dataset.noise_sigma,
            config["ambient.chain_steps"],
            config["ambient.gap"],
            logsnr_max=config["noise.logsnr_max"],
            grid=config["sampler.grid"],  # the chains' end levels spread as the sampler's
        )
    return AmbientLoss(dataset.noise_sigma, weighting, density, head), consistency


def build_cdl(config: Config, dataset: Dataset) -> Any:
    """CDL with a Gaussian reference of the training data's moments (full covariance up to 1024
    dimensions, per-dimension variances above); None when cdl.coef=0."""
    from models.cdl import CDLLoss

    if config["cdl.coef"] == 0:
        return None
    flat = dataset.train.flatten(1)
    cov = torch.cov(flat.T) if flat.shape[1] <= 1024 else flat.var(0)
    return CDLLoss(
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


def build_objective(
    config: Config, dataset: Dataset, weighting: Weighting, density: NoiseDensity
) -> Any:
    """The training objective: plain denoising (or the ambient Tweedie objective on noisy data),
    composed with TIW, consistency and CDL terms (models/objective.py)."""
    from models.objective import Objective

    head = build_logvar_head(config)
    ambient, consistency = build_ambient(config, dataset, weighting, density, head)
    return Objective(
        DenoiseLoss(weighting, density, head),
        tiw=build_tiw(config, dataset),
        ambient=ambient,
        consistency=consistency,
        consistency_coef=config["ambient.consistency"],
        cdl=build_cdl(config, dataset),
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
    return SAMPLERS[config["sampler"]], grid
