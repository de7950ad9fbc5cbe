"""Search spaces over the flat trial configuration, as data.

A space is a dict:
    "description": one line;
    "data": the default dataset preset;
    "params": {config key: {"type": "float" | "int" | "loguniform", "low", "high", "grid"}
               or {"type": "categorical", "choices": [...]}} — what the search samples;
    "fixed": {config key: value} — the same for every trial (budget keys included);
    "points": {name: {config key: value}} — optional named points (the baselines), searched
              as one categorical parameter "point";
    "baseline": {config key: value} — what a user trains without this tool (over "fixed"); the
                search's confirmation stage compares its best trials with it on fresh seeds;
    "reference": optional {"label": words, "config": {config key: value}} — the strongest published
                 recipe for the space's data (over "fixed"); the confirmation compares the
                 search's winner with it too, so a user learns whether the search beat the paper;
    "search": optional default search ("grid" for the baselines);
    "num_samples": default number of trials.
The helpers below only read that data (no Ray, no training).
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

from search_spaces.ambient import SPACE as AMBIENT
from search_spaces.baselines import SPACE as BASELINES
from search_spaces.budgets import SMOKE, SMOKE_NUM_SAMPLES
from search_spaces.contrastive import SPACE as CONTRASTIVE
from search_spaces.debias_family import SPACE as DEBIAS_FAMILY
from search_spaces.debias_family_cifar10 import SPACE as DEBIAS_FAMILY_CIFAR10
from search_spaces.debias_family_density import SPACE as DEBIAS_FAMILY_DENSITY
from search_spaces.density_ratio import SPACE as DENSITY_RATIO
from search_spaces.snr_weighting import SPACE as SNR_WEIGHTING

SPACES: dict[str, dict[str, Any]] = {
    "debias_family": DEBIAS_FAMILY,
    "snr_weighting": SNR_WEIGHTING,
    "density_ratio": DENSITY_RATIO,
    "contrastive": CONTRASTIVE,
    "ambient": AMBIENT,
    "baselines": BASELINES,
    "debias_family_cifar10": DEBIAS_FAMILY_CIFAR10,
    "debias_family_density": DEBIAS_FAMILY_DENSITY,
}
POINT_KEY = "point"  # the trial-config key that names a point of a space with "points"
GRID_DEFAULT_POINTS = 3  # numeric parameters without a "grid" list: low, middle, high

__all__ = [
    "GRID_DEFAULT_POINTS",
    "POINT_KEY",
    "SMOKE",
    "SMOKE_NUM_SAMPLES",
    "SPACES",
    "describe",
    "expand",
    "grid",
    "grid_values",
    "params_of",
    "describe_param",
    "sample",
    "tune_domain",
]


def params_of(space: dict[str, Any], fixed_keys: set[str] | frozenset[str] = frozenset()) -> dict:
    """The searched parameters, "point" included, less any key fixed by --set."""
    params = {k: v for k, v in space["params"].items() if k not in fixed_keys}
    if space.get("points"):
        params[POINT_KEY] = {"type": "categorical", "choices": list(space["points"])}
    return params


def expand(config: dict[str, Any], space: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trial config with its named point (if any) replaced by that point's keys.

    Keys set in the trial config win over the point's, so --set still fixes them.
    """
    config = dict(config)
    name = config.pop(POINT_KEY, None)
    if name is None:
        return config
    spaces = [space] if space is not None else list(SPACES.values())
    for s in spaces:
        if name in s.get("points", {}):
            return s["points"][name] | config
    raise KeyError(f"unknown point {name!r}")


def tune_domain(spec: dict[str, Any]) -> Any:
    """The Ray Tune domain of one parameter: the one place a spec's type becomes a distribution
    (what Optuna's TPE, the random search and PBT's resampling draw from)."""
    from ray import tune  # (seconds: the spaces are data that --help and --dry-run read too)

    kind = spec["type"]
    if kind == "categorical":
        return tune.choice(spec["choices"])
    if kind == "int":
        return tune.randint(spec["low"], spec["high"] + 1)
    if kind == "loguniform":
        return tune.loguniform(spec["low"], spec["high"])
    return tune.uniform(spec["low"], spec["high"])


def sample(space: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One random draw of the space's parameters (what a random search proposes)."""
    return {
        key: tune_domain(spec).sample(random_state=rng.randrange(2**31))
        for key, spec in params_of(space).items()
    }


def grid_values(spec: dict[str, Any]) -> list[Any]:
    """The values a grid search takes for one parameter."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    if "grid" in spec:
        return list(spec["grid"])
    low, high, n = spec["low"], spec["high"], GRID_DEFAULT_POINTS
    if spec["type"] == "loguniform":
        return [low * (high / low) ** (i / (n - 1)) for i in range(n)]
    values = [low + (high - low) * i / (n - 1) for i in range(n)]
    return sorted({round(v) for v in values}) if spec["type"] == "int" else values


def grid(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of the grid (the product of the parameters' grid values)."""
    params = params_of(space)
    keys = list(params)
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(grid_values(params[k]) for k in keys))
    ]


def describe_param(spec: dict[str, Any]) -> str:
    """One parameter's distribution in a few words: `float [0, 1.5]`, `choice [0.0, 1.0]`."""
    if spec["type"] == "categorical":
        return "choice " + json.dumps(spec["choices"])
    return f"{spec['type']} [{spec['low']:g}, {spec['high']:g}]"


def describe(name: str) -> str:
    """Several lines: the space, its parameters with ranges, its default dataset and budget."""
    space = SPACES[name]
    lines = [f"{name}: {space['description']}"]
    search = space.get("search", "optuna")
    trials = space["num_samples"] * (len(grid(space)) if search == "grid" else 1)
    lines.append(f"  data: {space['data']}    trials: {trials}    search: {search}")
    for key, spec in space["params"].items():
        lines.append(f"  {key:<22} {describe_param(spec)}")
    for point, keys in space.get("points", {}).items():
        lines.append(f"  point {point:<16} " + " ".join(f"{k}={v}" for k, v in keys.items()))
    lines.append("  fixed: " + " ".join(f"{k}={v}" for k, v in space["fixed"].items()))
    return "\n".join(lines)
