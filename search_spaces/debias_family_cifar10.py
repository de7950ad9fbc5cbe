"""debias_family on GPUs: the same parameters on long-tailed CIFAR-10 with Inception FID.

`cifar10_biased` keeps classes 0–4 whole and 20 % of classes 5–9, with a class-uniform 5 %
reference set (the TIW-DSM paper's setting), so every axis of the family has something to
correct. FID uses torch-fidelity's Inception (downloaded by torch-fidelity, or `--fid-weights`).
The per-trial budget is a starting point for one modern GPU per trial; it was not measured
here (this project's CI has no GPU): size it to your GPUs with `--set`.
"""

from search_spaces.budgets import GPU_IMAGE_BUDGET
from search_spaces.debias_family import SPACE as DEBIAS_FAMILY

SPACE = {
    "description": "debias_family on long-tailed CIFAR-10 with a GPU budget and Inception FID",
    "data": "cifar10_biased",
    "params": DEBIAS_FAMILY["params"],
    "fixed": {"weighting": "parametric", **GPU_IMAGE_BUDGET},
    "baseline": DEBIAS_FAMILY["baseline"],
    "reference": DEBIAS_FAMILY["reference"],
    "num_samples": 64,
}
