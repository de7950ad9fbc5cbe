"""Contrastive diffusion loss (Wu et al. 2024): λ_cdl, the ζ distribution, Monte-Carlo points
and the fraction of the batch that gets the term; evaluated with a few-step sampler, where
training off the training distribution should pay."""

from search_spaces.budgets import LOWDIM_BUDGET

SPACE = {
    "description": "CDL: coefficient, ζ location / scale, MC points M with 1/(2M) of the batch",
    "data": "ring8",
    "params": {
        "cdl.coef": {"type": "loguniform", "low": 0.1, "high": 10.0, "grid": [0.1, 1.0]},
        "cdl.zeta_loc": {"type": "float", "low": -2.0, "high": 6.0, "grid": [2.0]},
        "cdl.zeta_scale": {"type": "float", "low": 0.5, "high": 3.0, "grid": [1.5]},
    },
    # The estimator's budget: 2·M·fraction of the batch's rows go through the net, so M levels
    # go with 1/(2M) of the batch, one batch's worth of rows at every M (models/cdl.py; the cost
    # target of bench/objectives_cost.py), searched as one categorical parameter "point".
    "points": {f"mc{m}": {"cdl.mc_points": m, "cdl.fraction": 1 / (2 * m)} for m in (16, 32, 64)},
    "fixed": {**LOWDIM_BUDGET, "sampler.steps": 10},
    "baseline": {"cdl.coef": 0.0},  # the same denoising term without the contrastive one
    # The paper gives a range (0.1..10) rather than one coefficient: its middle, with the
    # config's default ζ density.
    "reference": {
        "label": "CDL at λ_cdl = 1 (Wu et al. 2024)",
        "config": {"cdl.coef": 1.0},
    },
    "num_samples": 12,
}
