"""`--to python`: the template module (tuner/export/template.py) with the found weighting and
density written into its block of constants, as one self-contained, torch-only file."""

from __future__ import annotations

import inspect
import json
from typing import Any

from models.schedules import DENSITIES
from models.weighting import WEIGHTINGS, Normalized
from tuner.config.build import build_density, build_weighting
from tuner.export import template

BEGIN, END = "# >>> found >>>\n", "# <<< found <<<\n"


def _found(config: dict[str, Any]) -> dict[str, Any]:
    """The template's constants: each registry entry's arguments read from the config by the
    keys the registry names (models/registry.py)."""
    weighting = {"name": config["weighting"]} | {
        arg: config[key] for arg, key in WEIGHTINGS.entry(config["weighting"]).params.items()
    }
    density = {"name": config["noise"]} | {
        arg: config[key] for arg, key in DENSITIES.entry(config["noise"]).params.items()
    }
    built = build_weighting(config, build_density(config))
    normalizer = built.mean if isinstance(built, Normalized) else 1.0
    return {"WEIGHTING": weighting, "NORMALIZER": normalizer, "DENSITY": density}


def python_source(config: dict[str, Any], origin: str) -> str:
    """The file's text for a resolved config; `origin` names the config it came from."""
    text = inspect.getsource(template)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    found = _found(config)
    block = "".join(f"{k} = {_literal(v)}\n" for k, v in found.items())
    note = f"# written by `python -m tuner.export {origin} --to python`\n"
    return f"{head}{BEGIN}{note}{block}{END}{tail}"


def _literal(value: Any) -> str:
    """A Python literal of a JSON value (floats exactly: repr round-trips)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return repr(value)
    return repr(float(value)) if isinstance(value, float) else repr(value)
