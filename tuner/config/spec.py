"""A trial's configuration: one flat dict of JSON values with dotted keys.

`DEFAULTS` is what a trial runs with when nothing is set; `SPEC` says, for
every key, its type and what is allowed. `resolve` merges overrides into the
defaults and checks every value, raising `ConfigError` with one line that names
the bad key or value and what is allowed.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from models.external import NOISE_INPUTS, PREDICTIONS
from models.nets import NETS
from models.samplers import SAMPLERS
from models.schedules import DENSITIES, GRIDS
from models.tiw import MODES as TIW_MODES
from models.weighting import WEIGHTINGS
from tuner.config.terms import TERMS
from tuner.data.presets import DATASETS, preset_entry

# Keys of older versions, with where their meaning went (a saved config is read with a note).
MOVED = {
    "weighting.gamma": "weighting.gamma was split: P2's exponent is weighting.p, "
    "min-SNR's cap is weighting.min_snr_gamma",
}
MOVED_VALUES = {  # (key, value) of older versions -> what it is now
    ("weighting", "learned"): {"weighting": "edm", "weighting.learned": True},
}


def _moved_value(key: str, value: Any) -> str | None:
    new = MOVED_VALUES.get((key, value)) if isinstance(value, str) else None
    if new is None:
        return None
    now = " with ".join(f"{k}={json.dumps(v)}" for k, v in new.items())
    return f"{key}={json.dumps(value)} is now {now}"


def evaluation_steps(steps: int, every: int, growth: float = 1.0) -> list[int]:
    """The steps at which a trial evaluates and checkpoints: every, every·g, every·g², … below
    `steps` (each rounded, and at least one step after the last), then `steps` itself.
    g = 1 is every `every` steps; g = ASHA's reduction factor puts the evaluations on its rungs.
    """
    out, at = [], float(every)
    while round(at) < steps:
        out.append(round(at))
        at = at + every if growth == 1 else max(at * growth, out[-1] + 1)
    return out + [steps]


# net=python:PACKAGE.MODULE:FACTORY names a factory of the user's own (tuner/config/build.py).
NET_PREFIX = "python:"
NET_FACTORY = NET_PREFIX + "PACKAGE.MODULE:FACTORY"
_FACTORY_PATH = re.compile(r"python:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class ConfigError(ValueError):
    """A configuration key or value that is not allowed (one-line message)."""


@dataclass(frozen=True)
class Spec:
    type: str  # "int", "float", "bool", "str", "path" (str or null)
    default: Any
    help: str
    choices: Iterable[str] | None = None  # a tuple, or a registry (its names, read when checked)
    low: float | None = None  # inclusive bounds
    high: float | None = None

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type == "path":
            return "a path or null"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'an integer' if self.type == 'int' else 'a number'} in [{lo}, {hi}]"


SPEC: dict[str, Spec] = {
    # Data.
    "data": Spec("str", "ring8", "training data preset, or folder:PATH", DATASETS),
    "data.root": Spec(
        "path", None, "folder holding CIFAR-10 (default ~/.cache/diffsearch/cifar10)"
    ),
    "data.download": Spec("bool", False, "allow downloading CIFAR-10 (needs a network)"),
    "data.size": Spec("int", 32, "image side for folder:PATH data", low=8, high=256),
    "data.flip": Spec(
        "str",
        "auto",
        "random horizontal flips of training images (auto: on for CIFAR-10 and folders)",
        ("auto", "on", "off"),
    ),
    "seed": Spec("int", 0, "seeds initialisation, data draws and every training step", low=0),
    # Network.
    "net": Spec(
        "str",
        "auto",
        "backbone: mlp for low-dim data, unet for images, or a factory of your own",
        ("auto", *NETS, NET_FACTORY),
    ),
    "net.width": Spec("int", 0, "hidden width (0 = 256 for mlp, 32 for unet)", low=0, high=4096),
    "net.depth": Spec(
        "int", 0, "mlp blocks or unet levels (0 = 3 for mlp, 2 for unet)", low=0, high=16
    ),
    "net.prediction": Spec(
        "str",
        "auto",
        "what a python: net predicts (auto: its `prediction` attribute; built-in nets: auto)",
        ("auto", *PREDICTIONS),
    ),
    "net.noise_input": Spec(
        "str",
        "auto",
        "how a python: net takes its noise level (auto: its `noise_input` attribute)",
        ("auto", *NOISE_INPUTS),
    ),
    # Optimisation.
    "train.steps": Spec("int", 3000, "optimiser steps", low=1),
    "train.batch": Spec("int", 256, "examples per step", low=1, high=65536),
    "train.lr": Spec("float", 2e-3, "AdamW learning rate", low=1e-12, high=1e6),
    "train.weight_decay": Spec("float", 0.0, "AdamW weight decay", low=0.0, high=10.0),
    "train.warmup": Spec("int", 100, "linear learning-rate warm-up steps", low=0),
    "train.ema": Spec(
        "float", 0.995, "EMA decay of the weights used for evaluation", low=0.0, high=0.999999
    ),
    "train.grad_clip": Spec("float", 1.0, "gradient-norm clip (0 = off)", low=0.0),
    "train.threads": Spec("int", 1, "torch CPU threads (0 = torch default)", low=0, high=1024),
    "train.precision": Spec(
        "str",
        "float32",
        "the net's forward and backward: float32, or bf16 autocast (losses stay float32)",
        ("float32", "bf16"),
    ),
    "train.compile": Spec("bool", False, "torch.compile the net (CUDA trials; slow to start)"),
    "train.log_every": Spec(
        "int", 10, "log loss/... and time/... every this many steps", low=1, high=1_000_000
    ),
    # Weighting w(λ) of the per-example ε-MSE.
    "weighting": Spec("str", "constant", "loss weighting over log-SNR", WEIGHTINGS),
    "weighting.p": Spec(
        "float", 0.5, "exponent p in (SNR + k)^-p (parametric; P2's γ)", low=-2.0, high=4.0
    ),
    "weighting.k": Spec(
        "float", 0.0, "offset k in (SNR + k)^-p (parametric and P2)", low=0.0, high=1e4
    ),
    "weighting.min_snr_gamma": Spec(
        "float", 5.0, "γ of min-SNR-γ: w = min(SNR, γ)/SNR", low=1e-3, high=1e4
    ),
    "weighting.clamp": Spec(
        "float",
        0.0,
        "parametric min-clamp: cap w at its value at SNR = clamp (0 = off)",
        low=0.0,
        high=1e5,
    ),
    "weighting.snr_max": Spec(
        "float", 1e4, "SNR is clamped to this before weighting", low=1.0, high=1e12
    ),
    "weighting.sigma_data": Spec("float", 0.5, "σ_data of the EDM weighting", low=1e-3, high=100.0),
    "weighting.bias": Spec(
        "float", 0.0, "b of the sigmoid weighting sigmoid(b - λ)", low=-20.0, high=20.0
    ),
    "weighting.normalize": Spec(
        "bool", True, "divide w by E_q[w] so the loss scale does not change"
    ),
    "weighting.learned": Spec(
        "bool", False, "add the EDM2 learned u(λ) head to any weighting (EDM2: weighting=edm)"
    ),
    # Noise-level density q(λ).
    "noise": Spec("str", "cosine", "density q(λ) of training log-SNRs", DENSITIES),
    "noise.loc": Spec(
        "float", 0.0, "location of the logistic or normal density", low=-20.0, high=20.0
    ),
    "noise.scale": Spec(
        "float", 1.0, "scale of the logistic or normal density", low=1e-3, high=20.0
    ),
    "noise.mode_scale": Spec(
        "float", 1.29, "scale s of SD3's mode (heavy-tail) density", low=-1.0, high=1.6
    ),
    "noise.shift": Spec(
        "float",
        1.0,
        "resolution shift of any density (SD3/Flux): every level moves by -2 log shift",
        low=0.01,
        high=100.0,
    ),
    "noise.logsnr_min": Spec(
        "float", -15.0, "lowest log-SNR (training and sampling)", low=-30.0, high=0.0
    ),
    "noise.logsnr_max": Spec(
        "float", 15.0, "highest log-SNR (training and sampling)", low=0.0, high=30.0
    ),
    # Sampling and evaluation.
    "sampler": Spec("str", "ddim", "sampler used for evaluation", SAMPLERS),
    "sampler.steps": Spec("int", 50, "sampler steps", low=1, high=10000),
    "sampler.grid": Spec("str", "cosine", "spacing of the sampler's log-SNR grid", GRIDS),
    "eval.samples": Spec("int", 2000, "samples generated per evaluation", low=2, high=1_000_000),
    "eval.every": Spec("int", 1000, "evaluate (and checkpoint) every this many steps", low=1),
    "eval.growth": Spec(
        "float",
        1.0,
        "evaluate at eval.every·growth^k and the last step (1 = every eval.every; ASHA sets 3)",
        low=1.0,
        high=100.0,
    ),
    "eval.fid_weights": Spec(
        "path", None, "local Inception weights file for FID on natural images"
    ),
    # Time-dependent importance reweighting (TIW-DSM, Kim et al. 2024).
    "tiw.strength": Spec(
        "float", 0.0, "discriminator strength a (0 = off, 1 = TIW-DSM)", low=0.0, high=4.0
    ),
    "tiw.mode": Spec("str", "full", "which part of TIW to apply", TIW_MODES),
    "tiw.clip": Spec(
        "float", 1e-5, "discriminator output clipped to [clip, 1 - clip]", low=1e-12, high=0.49
    ),
    "tiw.disc_steps": Spec("int", 1500, "discriminator pre-training steps", low=1),
    "tiw.disc_lr": Spec("float", 2e-3, "discriminator learning rate", low=1e-12, high=1e3),
    "tiw.disc_batch": Spec(
        "int", 256, "discriminator batch (half reference, half observed)", low=2
    ),
    # Ambient diffusion on noisy data (Daras et al. 2024).
    "ambient.tweedie": Spec(
        "bool", True, "Tweedie objective on noisy data (false = naive denoising)"
    ),
    "ambient.consistency": Spec(
        "float", 0.0, "weight λ_cons of the consistency loss", low=0.0, high=100.0
    ),
    "ambient.chain_steps": Spec("int", 1, "sampler steps in each consistency chain", low=1, high=8),
    "ambient.gap": Spec(
        "float",
        0.0,
        "largest log-SNR step of a consistency chain (0 = no cap: the chain splits [λ_n, λ''] "
        "evenly)",
        low=0.0,
        high=20.0,
    ),
    # Contrastive diffusion loss (Wu et al. 2024).
    "cdl.coef": Spec("float", 0.0, "weight λ_cdl of the contrastive loss", low=0.0, high=100.0),
    "cdl.zeta_loc": Spec(
        "float", 2.0, "location of the logistic density of ζ (log-SNR)", low=-20.0, high=20.0
    ),
    "cdl.zeta_scale": Spec("float", 1.5, "scale of the logistic density of ζ", low=1e-3, high=20.0),
    "cdl.zeta_min": Spec("float", -2.0, "ζ clipped below", low=-30.0, high=30.0),
    "cdl.zeta_max": Spec("float", 8.0, "ζ clipped above", low=-30.0, high=30.0),
    "cdl.mc_points": Spec(
        "int", 32, "Monte-Carlo log-SNRs per likelihood estimate (a Sobol set)", low=1, high=256
    ),
    "cdl.fraction": Spec(
        "float",
        1 / 64,
        "fraction of the batch that gets the contrastive term (at least one example)",
        low=0.0,
        high=1.0,
    ),
}

DEFAULTS: dict[str, Any] = {key: spec.default for key, spec in SPEC.items()}


def _known(key: str, where: str = "") -> None:
    if key in MOVED:
        raise ConfigError(MOVED[key])
    if key not in SPEC:
        raise ConfigError(f"unknown key {key!r}{where}; known keys: {', '.join(SPEC)}")


def _check(key: str, value: Any) -> Any:
    spec = SPEC[key]
    bad = ConfigError(f"{key}={json.dumps(value)} is not allowed; expected {spec.allowed()}")
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.type == "path":
        if value is not None and not isinstance(value, str):
            raise bad
        return value
    if spec.type == "str":
        if not isinstance(value, str):
            raise bad
        if key == "data" and value.startswith("folder:") and len(value) > len("folder:"):
            return value
        if key == "net" and value.startswith(NET_PREFIX):
            if not _FACTORY_PATH.fullmatch(value):
                raise ConfigError(
                    f"net={json.dumps(value)} is not allowed; expected "
                    f"{NET_FACTORY} (a dotted module path, a colon, a function name)"
                )
            return value
        if spec.choices and value not in spec.choices:
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    if spec.type == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise bad
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise bad
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise bad
    return value


def resolve(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full, checked configuration: DEFAULTS updated with `overrides`."""
    config = dict(DEFAULTS)
    for key, value in (overrides or {}).items():
        _known(key)
        moved = _moved_value(key, value)
        if moved:
            raise ConfigError(moved)
        config[key] = value
    for key in SPEC:
        config[key] = _check(key, config[key])
    if config["noise.logsnr_min"] >= config["noise.logsnr_max"]:
        raise ConfigError(
            f"noise.logsnr_min={config['noise.logsnr_min']:g} must be below "
            f"noise.logsnr_max={config['noise.logsnr_max']:g}"
        )
    if config["cdl.zeta_min"] >= config["cdl.zeta_max"]:
        raise ConfigError(
            f"cdl.zeta_min={config['cdl.zeta_min']:g} must be below cdl.zeta_max={config['cdl.zeta_max']:g}"
        )
    _check_net_keys(config)
    _check_composition(config)
    return config


# A data fact as a refusal names it: what the data need, and how a preset without it reads.
FACTS = {
    "noisy": ("noisy data", "noisy data (data={data} is clean)"),
    "reference": (
        "data with a reference set",
        "data with a reference set; data={data} has none (use one of {having})",
    ),
}


def _check_net_keys(config: dict[str, Any]) -> None:
    """net.prediction and net.noise_input describe a python: net; the built-in nets have their
    own (v from x_λ and λ/8, models/param.py) and take only auto."""
    if config["net"].startswith(NET_PREFIX):
        return
    for key in ("net.prediction", "net.noise_input"):
        if config[key] != "auto":
            raise ConfigError(
                f"{key}={config[key]} describes a net of your own (net={NET_FACTORY}); "
                f"net={config['net']} takes {key}=auto"
            )


def _check_composition(config: dict[str, Any]) -> None:
    """The objective's terms that need or refuse a data fact or one another (each registered
    term's ``requires`` and ``refuses``, tuner/config/terms.py), by the data preset's facts
    (tuner.data.presets.DATASETS), so that a plan (and --dry-run) refuses what a trial could not
    build. Terms needing another term are checked first, then refusals, then data facts."""
    on = [name for name in TERMS if _switched_on(name, config)]
    for rule in (_needs_term, _refused, _needs_fact):
        for name in on:
            problem = rule(name, config)
            if problem:
                raise ConfigError(problem)


def _term(name: str) -> Any:
    return TERMS.entry(name).info["term"]


def _switched_on(name: str, config: dict[str, Any]) -> bool:
    key = TERMS.entry(name).info.get("switch")
    return key is None or bool(config[key])


def _missing_facts(name: str, config: dict[str, Any]) -> list[str]:
    facts = preset_entry(config["data"]).info
    return [f for f in _term(name).requires if f not in TERMS and not facts.get(f, False)]


def _active(name: str, config: dict[str, Any]) -> bool:
    return _switched_on(name, config) and not _missing_facts(name, config)


def _setting(name: str, config: dict[str, Any] | None = None) -> str:
    """A term's switch as set in `config` ("cdl.coef=1"), or as it must be set to turn it on
    ("ambient.tweedie=true", "tiw.strength>0") without a config."""
    key = TERMS.entry(name).info["switch"]
    if config is not None:
        value = config[key]
        return f"{key}={json.dumps(value) if isinstance(value, bool) else format(value, 'g')}"
    return f"{key}=true" if SPEC[key].type == "bool" else f"{key}>0"


def _off(name: str) -> str:
    key = TERMS.entry(name).info["switch"]
    return f"{key}=false" if SPEC[key].type == "bool" else f"{key}=0"


def _lacking(fact: str, data: str) -> str:
    having = ", ".join(n for n in DATASETS if DATASETS.entry(n).info.get(fact))
    return FACTS.get(fact, (fact, f"{fact} (data={{data}} has none)"))[1].format(
        data=data, having=having
    )


def _tail(name: str, why: str) -> str:
    return f", {why}; use {_off(name)}" if why else ""


def _needs_term(name: str, config: dict[str, Any]) -> str | None:
    for other, why in _term(name).requires.items():
        if other in TERMS and not _active(other, config):
            missing = _missing_facts(other, config)
            lacks = _lacking(missing[0], config["data"]) if missing else _setting(other)
            return f"{_setting(name, config)} needs {lacks}{_tail(name, why)}"
    return None


def _refused(name: str, config: dict[str, Any]) -> str | None:
    for other, why in _term(name).refuses.items():
        if other in TERMS and _active(other, config):
            on = "".join(f" on {FACTS.get(f, (f,))[0]}" for f in _term(other).requires)
            return (
                f"{_setting(name, config)} does not compose with {_setting(other)}{on} "
                f"(data={config['data']}): {why}; use {_off(name)}"
            )
    return None


def _needs_fact(name: str, config: dict[str, Any]) -> str | None:
    """A term the user switched on, on data without a fact it requires; one switched on by
    default (ambient.tweedie) is just off there."""
    key = TERMS.entry(name).info.get("switch")
    if key is None or SPEC[key].default:
        return None
    for fact in _missing_facts(name, config):
        why = _term(name).requires[fact]
        return f"{_setting(name, config)} needs {_lacking(fact, config['data'])}{_tail(name, why)}"
    return None


@contextmanager
def extended(specs: dict[str, Spec]) -> Iterator[None]:
    """SPEC and DEFAULTS with more keys while the block runs (a new term's or weighting's keys in
    a test or an experiment), as ``Registry.extended`` adds an entry."""
    clash = sorted(set(specs) & set(SPEC))
    if clash:
        raise ValueError(f"config keys {', '.join(clash)} are already specified")
    SPEC.update(specs)
    DEFAULTS.update({key: spec.default for key, spec in specs.items()})
    try:
        yield
    finally:
        for key in specs:
            del SPEC[key], DEFAULTS[key]


def parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, true/false, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one `KEY=VALUE` (a --set argument)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"malformed --set {item!r}; expected KEY=VALUE, e.g. --set weighting=debiased"
        )
    _known(key, f" in --set {item!r}")
    return key, parse_value(text.strip())


def load_config_file(path: str) -> dict[str, Any]:
    """Read a saved flat config (best.json, config.json, or a metrics.json's "config")."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of KEY: VALUE")
    data, notes = migrate(data)
    for note in notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    return data


def migrate(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A saved configuration of an older version with its moved keys moved, and one note each."""
    config, notes = dict(config), []
    if "weighting.gamma" in config:
        gamma = config.pop("weighting.gamma")
        target = {"p2": "weighting.p", "min_snr": "weighting.min_snr_gamma"}.get(
            config.get("weighting", DEFAULTS["weighting"])
        )
        if target is not None:
            config[target] = gamma
        read = f"read as {target}={json.dumps(gamma)}" if target else "unused here, dropped"
        notes.append(f"{MOVED['weighting.gamma']}; {read}")
    for (key, value), new in MOVED_VALUES.items():
        if config.get(key) == value:
            notes.append(f"{_moved_value(key, value)}; read as such")
            config |= new
    return config, notes


# The registries behind the configuration's named choices, by the key that picks an entry.
REGISTRIES = {
    "data": DATASETS,
    "net": NETS,
    "weighting": WEIGHTINGS,
    "noise": DENSITIES,
    "sampler": SAMPLERS,
}


def markdown_table() -> str:
    """The configuration reference of README.md, generated from SPEC."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, spec in SPEC.items():
        allowed = spec.allowed().replace("one of ", "")
        rows.append(f"| `{key}` | `{json.dumps(spec.default)}` | {allowed} | {spec.help} |")
    return "\n".join(rows)


def registry_table() -> str:
    """Every registry entry and the configuration keys it reads (docs/architecture.md)."""
    rows = ["| key | value | reads |", "|---|---|---|"]
    for key, registry in REGISTRIES.items():
        for name in registry:
            reads = ", ".join(f"`{k}`" for k in registry.entry(name).params.values()) or "–"
            rows.append(f"| `{key}` | `{name}` | {reads} |")
    return "\n".join(rows)


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """`sys.exit(main())` for a command line, ending quietly when whoever reads stdout has gone
    (`python -m tuner.config | head`): no BrokenPipeError traceback, exit status 1 (Python's
    recipe, in the `signal` module's docs: "Note on SIGPIPE")."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush finds no pipe
        sys.exit(1)
    sys.exit(status)
