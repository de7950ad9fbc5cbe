"""The joint debiasing family with the training density of noise levels searched too.

`debias_family`'s parameters plus the location and scale of a normal density over λ (SD3's
logit-normal over t and EDM's log-normal σ are members: N(0, 2) and N(2.4, 2.4); the default
space's cosine density is close to N(0, π)). SD3 (Esser et al. 2024) and Hang et al. 2024 found
the density mattering more than the weighting; this space lets a search weigh the two. It is the
space of the learning-curve table (bench/learning_curves.py).
"""

from search_spaces.budgets import IMAGE_BUDGET
from search_spaces.debias_family import SPACE as DEBIAS_FAMILY

SPACE = {
    "description": "debias_family plus a normal density over log-SNR: location and scale",
    "data": "digits_biased",
    "params": {
        **DEBIAS_FAMILY["params"],
        "noise.loc": {"type": "float", "low": -2.0, "high": 4.0, "grid": [0.0, 2.4]},
        "noise.scale": {"type": "float", "low": 1.0, "high": 4.0, "grid": [2.0, 2.4]},
    },
    "fixed": {"weighting": "parametric", "noise": "normal", **IMAGE_BUDGET},
    # What a user trains without this tool: constant ε-MSE on the cosine density, no TIW, no CDL.
    "baseline": {"weighting": "constant", "noise": "cosine", "tiw.strength": 0.0, "cdl.coef": 0.0},
    # The strongest published recipe for this data (what a user who read the paper trains):
    # TIW-DSM as published (Kim et al. 2024), strength 1 with the constant weighting.
    "reference": {
        "label": "TIW-DSM as published (strength 1, constant weighting, cosine q(λ))",
        "config": {
            "weighting": "constant",
            "tiw.strength": 1.0,
            "cdl.coef": 0.0,
            "noise": "cosine",
        },
    },
    "num_samples": 48,
}
