"""The SNR weighting w(λ) and the noise-level density q(λ): the effective weighting w·q
(Kingma & Gao 2023), with w normalised so that the loss scale does not change."""

from search_spaces.budgets import IMAGE_BUDGET

SPACE = {
    "description": "parametric weighting (SNR + k)^-p, its SNR cap, and the density q(λ)",
    "data": "digits",
    "params": {
        "weighting.p": {"type": "float", "low": -0.5, "high": 1.5, "grid": [0.0, 0.5, 1.0]},
        "weighting.k": {"type": "float", "low": 0.0, "high": 5.0, "grid": [0.0, 1.0]},
        "weighting.snr_max": {"type": "loguniform", "low": 1e2, "high": 1e5, "grid": [1e3, 1e4]},
        "noise": {"type": "categorical", "choices": ["cosine", "linear_beta", "logistic", "edm"]},
        "noise.loc": {"type": "float", "low": -3.0, "high": 3.0, "grid": [0.0]},
    },
    "fixed": {"weighting": "parametric", "weighting.normalize": True, **IMAGE_BUDGET},
    "baseline": {"weighting": "constant", "noise": "cosine"},  # DDPM "simple", cosine q(λ)
    # The paper the space is built on: the debiased weighting SNR^-1/2 (Yu et al. 2024).
    "reference": {
        "label": "the debiased weighting as published (SNR^-1/2, cosine q(λ))",
        "config": {"weighting": "debiased", "noise": "cosine"},
    },
    "num_samples": 12,
}
