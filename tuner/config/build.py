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
from models.nets import NETS
from models.objective import TERMS, Objective
from models.param import EpsModel
from models.samplers import SAMPLERS
from models.schedules import DENSITIES, NoiseDensity, logsnr_grid
from models.weighting import WEIGHTINGS, LogVarHead, Normalized, Weighting
from tuner.config.spec import NET_PREFIX, ConfigError
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
