"""The search's pre-training of TIW discriminators: before the trials start, every distinct
discriminator key the search knows in advance is trained once, as a Ray task with a trial's
resources, into the experiment's discriminator cache (tuner/training/discriminators.py), where
the trials find it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ray
import torch

from search_spaces import POINT_KEY, SPACES, expand
from tuner.config.build import build_dataset
from tuner.config.spec import resolve
from tuner.search.plan import Plan
from tuner.storage import read_bytes
from tuner.training import discriminators


def known_disc_configs(plan: Plan) -> list[dict[str, Any]]:
    """The configs whose TIW discriminators the search can train before its trials: all of
    them unless a searched parameter changes a discriminator's key."""
    points = plan.params.get(POINT_KEY, {}).get("choices", [None])
    configs = [
        expand(plan.fixed | ({POINT_KEY: p} if p else {}), SPACES[plan.space]) for p in points
    ]
    configs = [resolve(c | {"tiw.strength": 1.0}) for c in configs]  # the key ignores it
    if any(k in discriminators.key_fields(c) for c in configs for k in plan.params):
        return []  # the trials train (and share) their own
    return configs


def _pretrain_one(config: dict[str, Any], cache: str) -> str:
    """Train (or find) the discriminator of one config in the cache, as its trial would (the
    trial's CPU threads); returns its key."""
    if config["train.threads"]:
        torch.set_num_threads(config["train.threads"])
    discriminators.get_or_train(cache, config, build_dataset(config))
    return discriminators.disc_key(config)


def pretrain(configs: Iterable[dict[str, Any]], cache: str, cpus: float, gpus: float) -> int:
    """Train the discriminators of `configs` (resolved) that the cache lacks, one per distinct
    key, in parallel as Ray tasks with a trial's resources; returns how many were trained."""
    todo: dict[str, dict[str, Any]] = {}
    for config in configs:
        if not discriminators.needs_discriminator(config):
            continue
        if read_bytes(discriminators.entry_path(cache, config)) is None:
            todo.setdefault(discriminators.disc_key(config), config)
    if not todo:
        return 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_pretrain_one)
    ray.get([task.remote(config, cache) for config in todo.values()])
    return len(todo)
