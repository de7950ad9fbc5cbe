"""Take a search's answer to the trainers practitioners use: `python -m tuner.export BEST.json
--to diffusers|kohya|onetrainer|edm2|python`. Reads a flat config (tuner/config) and the
project's weightings and densities (models/); no Ray, no MLflow.

`curves` holds the effective weightings w(λ)·q(λ) and their L1 distance, `targets` what each
trainer can set (from its current sources), `report` the printed setting, and `python` the
self-contained file of `--to python` (the text of `template`).
"""

from tuner.export.python import python_source
from tuner.export.report import describe, fit, inexpressible
from tuner.export.targets import PREDICTIONS, TARGETS, Context

__all__ = ["PREDICTIONS", "TARGETS", "Context", "describe", "fit", "inexpressible", "python_source"]
