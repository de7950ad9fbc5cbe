"""Contrastive diffusion loss (Wu et al. 2024): λ_cdl, the ζ distribution, Monte-Carlo points
and the fraction of the batch that gets the term; evaluated with a few-step sampler, where
training off the training distribution should pay."""

from search_spaces.budgets import LOWDIM_BUDGET

SPACE = {
    "description": "CDL: coefficient, ζ location / scale, MC points, batch fraction",
    "data": "ring8",
    "params": {
        "cdl.coef": {"type": "loguniform", "low": 0.1, "high": 10.0, "grid": [0.1, 1.0]},
        "cdl.zeta_loc": {"type": "float", "low": -2.0, "high": 6.0, "grid": [2.0]},
        "cdl.zeta_scale": {"type": "float", "low": 0.5, "high": 3.0, "grid": [1.5]},
        # 2·M·fraction of the batch's rows go through the net: M levels for about 1/(2M) of
        # the batch keep that near one batch (models/cdl.py; bench/objectives_cost.py).
        "cdl.mc_points": {"type": "categorical", "choices": [16, 32, 64]},
        "cdl.fraction": {"type": "float", "low": 1 / 128, "high": 1 / 32, "grid": [1 / 64]},
    },
    "fixed": {**LOWDIM_BUDGET, "sampler.steps": 10},
    "baseline": {"cdl.coef": 0.0},  # the same denoising term without the contrastive one
    "num_samples": 12,
}
