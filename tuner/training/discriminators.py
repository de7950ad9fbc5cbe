"""One TIW discriminator per distinct key, shared by every trial that needs it.

The discriminator d(x_λ, λ) of TIW-DSM depends on the data, the reference set, the noise-level
density it is trained under, its own keys (`tiw.disc_*`, `tiw.clip`) and the seed, not on the
weighting or the strength that use it. A trial looks it up by the hash of exactly those keys in a
content-addressed cache folder (the search's experiment storage, which every node of a Ray
cluster reaches; `~/.cache/diffsearch/discriminators` for `python -m tuner.train`), trains and
stores it when it is missing, and loads it with `torch.load(weights_only=True)` when it is there.
The search trains the keys it knows in advance before its trials start (`pretrain`).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from tuner.storage import read_bytes, write_bytes

# The config keys a discriminator depends on (the dataset's seed included); bump VERSION when
# the discriminator or its training changes, so that old entries are not reused.
KEYS = (
    "data",
    "data.size",
    "seed",
    "noise",
    "noise.loc",
    "noise.scale",
    "noise.logsnr_min",
    "noise.logsnr_max",
    "tiw.clip",
    "tiw.disc_steps",
    "tiw.disc_lr",
    "tiw.disc_batch",
)
VERSION = 1
DEFAULT_CACHE = "~/.cache/diffsearch/discriminators"


def needs_discriminator(config: dict[str, Any]) -> bool:
    return config["tiw.strength"] > 0


def disc_key(config: dict[str, Any]) -> str:
    """The content address of the discriminator a (resolved) config needs."""
    described = {k: config[k] for k in KEYS} | {"version": VERSION}
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


def _pretrain_one(config: dict[str, Any], cache: str) -> str:
    """Train (or find) the discriminator of one config in the cache; returns its key."""
    from tuner.training.trainer import Trainer

    trainer = Trainer(config, disc_cache=cache)
    trainer.prepare()
    return disc_key(trainer.config)


def pretrain(configs: Iterable[dict[str, Any]], cache: str, cpus: float, gpus: float) -> int:
    """Train the discriminators of `configs` (resolved) that the cache lacks, one per distinct
    key, in parallel as Ray tasks with a trial's resources; returns how many were trained."""
    import ray

    todo: dict[str, dict[str, Any]] = {}
    for config in configs:
        if needs_discriminator(config) and read_bytes(entry_path(cache, config)) is None:
            todo.setdefault(disc_key(config), config)
    if not todo:
        return 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_pretrain_one)
    ray.get([task.remote(config, cache) for config in todo.values()])
    return len(todo)
