"""`python -m tuner.export BEST.json --to TARGET`: the native setting nearest the found weighting
and density, or (--to python) a self-contained file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuner.config.spec import ConfigError, load_config_file, resolve
from tuner.export.curves import SCHEDULES
from tuner.export.python import python_source
from tuner.export.report import describe, inexpressible
from tuner.export.targets import PREDICTIONS, TARGETS, Context

CHOICES = (*TARGETS, "python")
DEFAULT_OUT = "diffsearch_loss.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit status 2, not the usage block
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m tuner.export",
        description="the trainer settings of a found loss weighting and density",
    )
    p.add_argument("config", help="a saved flat configuration (best.json, metrics.json)")
    p.add_argument("--to", required=True, choices=CHOICES, help="the trainer to write for")
    p.add_argument(
        "--prediction",
        default="epsilon",
        choices=PREDICTIONS,
        help="what your model predicts: epsilon or v_prediction (SD 1.x/2.x/XL scripts) or flow "
        "(SD3/Flux scripts); default epsilon",
    )
    p.add_argument(
        "--schedule",
        default="cosine",
        choices=SCHEDULES,
        help="your epsilon/v model's noise schedule (diffusers beta_schedule; SD uses "
        "scaled_linear); default cosine, the search's own density",
    )
    p.add_argument(
        "--out", default=DEFAULT_OUT, help=f"--to python: the file (default {DEFAULT_OUT})"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        config = resolve(load_config_file(args.config))
        if args.to == "python":
            text = python_source(config, args.config)
            out = Path(args.out)
            if not out.parent.is_dir():
                raise ConfigError(f"--out {args.out}: folder {out.parent} does not exist")
        else:
            text = describe(config, args.to, Context(args.prediction, args.schedule))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.to != "python":
        print(text)
        return 0
    out.write_text(text)
    print(
        f"wrote {out}: loss_weight(timesteps, alphas_cumprod, prediction_type) and "
        "sample_timesteps(batch_size, alphas_cumprod, generator) reproduce the found w(λ) and "
        "q(λ) exactly at a scheduler's timesteps (torch only)"
    )
    for line in inexpressible(config, "the python file"):
        print(f"  cannot express: {line}")
    return 0
