"""Time-dependent importance reweighting (TIW-DSM, Kim et al. 2024) on a biased mixture:
discriminator strength a (weight r^a, correction a·∇log r), which part applies, and the
discriminator's clip and pre-training."""

from search_spaces.budgets import LOWDIM_BUDGET

SPACE = {
    "description": "TIW-DSM: strength a, mode, discriminator clip / steps / learning rate",
    "data": "bimodal_biased",
    "params": {
        "tiw.strength": {"type": "float", "low": 0.0, "high": 1.5, "grid": [0.0, 0.5, 1.0]},
        "tiw.mode": {"type": "categorical", "choices": ["full", "weight", "correction"]},
        "tiw.clip": {"type": "loguniform", "low": 1e-6, "high": 1e-2, "grid": [1e-5]},
        "tiw.disc_steps": {"type": "int", "low": 100, "high": 1000, "grid": [500]},
        "tiw.disc_lr": {"type": "loguniform", "low": 3e-4, "high": 1e-2, "grid": [2e-3]},
    },
    "fixed": {k: v for k, v in LOWDIM_BUDGET.items() if k != "tiw.disc_steps"},  # searched
    "baseline": {"tiw.strength": 0.0},  # plain denoising of the biased data
    "reference": {
        "label": "TIW-DSM as published (strength 1, full)",
        "config": {"tiw.strength": 1.0, "tiw.mode": "full"},
    },
    "num_samples": 12,
}
