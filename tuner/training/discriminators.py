"""One TIW discriminator per distinct key, shared by every trial that needs it.

The discriminator d(x_λ, λ) of TIW-DSM depends on the data, the reference set, the noise-level
density it is trained under, the seed and the config keys that feed the "tiw" term's builder
(models.objective.TERMS, tuner/config/terms.py) except those that only use the trained
discriminator (the entry's ``use_only``: the strength, the mode, the clip), not on the weighting
or anything else that uses it. ``get_or_train`` looks it up by the hash of exactly those keys in a
content-addressed cache folder (the search's experiment storage, which every node of a Ray
cluster reaches; `~/.cache/diffsearch/discriminators` for `python -m tuner.train`), trains and
stores it when it is missing, and loads it with `torch.load(weights_only=True)` when it is there.
The search trains the keys it knows in advance before its trials start (tuner/search/pretrain.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from typing import Any

import torch

from models.objective import TERMS
from models.schedules import DENSITIES
from models.tiw import TIWCorrection
from tuner.config.build import build_density, build_net, build_objective
from tuner.storage import read_bytes, write_bytes
from tuner.training.seeds import PREPARE_STREAM, step_generator

# What identifies the training and reference sets: build_dataset's arguments less where the
# files are kept (data.root, data.download). Bump VERSION when the discriminator or its training
# changes, so that old entries are not reused.
DATA_KEYS = ("data", "data.size", "seed")
VERSION = 1
DEFAULT_CACHE = "~/.cache/diffsearch/discriminators"


def needs_discriminator(config: dict[str, Any]) -> bool:
    return config["tiw.strength"] > 0


def key_fields(config: dict[str, Any]) -> list[str]:
    """The config keys a (resolved) config's discriminator depends on: the data's, the density's
    (its registry entry's), and every key the "tiw" entry reads but its ``use_only`` ones."""
    tiw = TERMS.entry("tiw")
    fed = [key for arg, key in tiw.params.items() if arg not in tiw.info.get("use_only", ())]
    density = ["noise", *DENSITIES.entry(config["noise"]).params.values()]
    return sorted({*DATA_KEYS, *density, *fed})


def disc_key(config: dict[str, Any]) -> str:
    """The content address of the discriminator a (resolved) config needs."""
    described = {k: config[k] for k in key_fields(config)} | {"version": VERSION}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


def entry_path(cache: str, config: dict[str, Any]) -> str:
    return f"{cache.rstrip('/')}/{disc_key(config)}.pt"


def load(cache: str, config: dict[str, Any], disc: torch.nn.Module) -> dict[str, float] | None:
    """Load the cached discriminator into `disc`; its training metrics, or None when the entry
    is missing. A damaged entry is named in a warning and treated as missing (retrained)."""
    path = entry_path(cache, config)
    data = read_bytes(path)
    if data is None:
        return None
    try:
        entry = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if entry["key"] != disc_key(config):
            raise ValueError(f"it holds key {entry['key']}")
        disc.load_state_dict(entry["state"])
        return {k: float(v) for k, v in entry["metrics"].items()}
    except Exception as e:  # noqa: BLE001 - any unreadable entry is reported the same way
        warnings.warn(
            f"discriminator cache entry {path} is damaged ({type(e).__name__}: {e}); retraining",
            stacklevel=2,
        )
        return None


def store(cache: str, config: dict[str, Any], disc: torch.nn.Module, metrics: dict) -> None:
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in disc.state_dict().items()}
    torch.save({"key": disc_key(config), "state": state, "metrics": metrics}, buffer)
    write_bytes(entry_path(cache, config), buffer.getvalue())


def fresh_tiw(config: dict[str, Any], dataset: Any) -> TIWCorrection:
    """The untrained TIW correction a trial of `config` builds: its discriminator initialised
    from the same global draws as in the trial (after seeding and the model's initialisation,
    tuner/training/trainer.py), so that a discriminator pre-trained here is the trial's own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        build_net(config, dataset)  # its initialisation draws come before the discriminator's
        tiw = build_objective(config, dataset).tiw
    if tiw is None:
        raise ValueError(f"tiw.strength={config['tiw.strength']:g}: the config uses no TIW")
    return tiw


def get_or_train(
    cache: str | None,
    config: dict[str, Any],
    dataset: Any,
    *,
    tiw: TIWCorrection | None = None,
    device: str | torch.device = "cpu",
) -> tuple[TIWCorrection, dict[str, float]]:
    """The trained TIW correction of a config: its discriminator loaded from the cache when it
    is there, else trained (and stored in the cache when one is given).

    Args:
        cache: folder or URI of the shared discriminators; None trains without one.
        config: a resolved configuration with tiw.strength > 0.
        dataset: its data (``build_dataset(config)``), with a reference set.
        tiw: the correction whose discriminator to load or train in place (a trainer's
            objective's); default: ``fresh_tiw``.
        device: where it trains; its draws come from the trial's preparation stream there.
    Returns:
        The correction, now fitted, and the discriminator's training metrics.
    """
    tiw = fresh_tiw(config, dataset) if tiw is None else tiw
    metrics = load(cache, config, tiw.disc) if cache else None
    if metrics is None:
        if dataset.reference is None:
            raise ValueError("TIW (tiw.strength > 0) needs a dataset with a reference set")
        generator = step_generator(config["seed"], 0, PREPARE_STREAM, device)
        metrics = tiw.fit(dataset.train, dataset.reference, build_density(config), generator)
        if cache:
            store(cache, config, tiw.disc, metrics)
    tiw.disc.eval()
    tiw.fitted = True
    return tiw, metrics
