"""The published weightings as fixed points (METHODS.md §1), on the same data and budget as
debias_family so that its leaderboard is directly comparable. A grid over the points."""

from search_spaces.budgets import IMAGE_BUDGET

SPACE = {
    "description": "published points: constant, debiased, P2, min-SNR-5, x0, EDM, sigmoid, learned",
    "data": "digits_biased",
    "params": {},
    "points": {
        "constant": {"weighting": "constant"},  # DDPM "simple"
        "debiased": {"weighting": "debiased"},  # Yu et al.: SNR^-1/2
        "p2": {"weighting": "p2", "weighting.k": 1.0, "weighting.p": 1.0},  # Choi et al.
        "min_snr_5": {"weighting": "min_snr", "weighting.min_snr_gamma": 5.0},  # Hang et al.
        "x0": {"weighting": "x0"},
        "edm": {"weighting": "edm", "noise": "edm"},  # Karras et al. 2022, with its q(λ)
        "sigmoid": {"weighting": "sigmoid", "weighting.bias": -2.0},  # Kingma & Gao 2023
        # EDM2: the EDM weighting with its learned u(λ) head
        "learned": {"weighting": "edm", "weighting.learned": True, "noise": "edm"},
    },
    "fixed": {**IMAGE_BUDGET},
    "baseline": {"weighting": "constant"},
    "search": "grid",
    "num_samples": 1,
}
