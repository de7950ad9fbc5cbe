"""Ambient diffusion on noisy data (Daras et al. 2024): the Tweedie objective with the
consistency loss's weight, chain length and step gap searched; naive denoising of the noisy data
is the baseline the confirmation stage compares the search's best with (consistency needs the
Tweedie objective, so ambient.tweedie is not a searched parameter: tuner.config refuses the
combination)."""

from search_spaces.budgets import LOWDIM_BUDGET

SPACE = {
    "description": "ambient Tweedie: consistency weight / chain steps / gap (baseline: naive)",
    "data": "gaussian_noisy",
    "params": {
        # 0 = no consistency term; 0.015 is the reference configs' value.
        "ambient.consistency": {"type": "categorical", "choices": [0.0, 0.003, 0.015, 0.05]},
        "ambient.chain_steps": {"type": "int", "low": 1, "high": 4, "grid": [1, 2]},
        # 0 = no cap: each chain splits [λ_n, λ''] evenly (models/ambient.py)
        "ambient.gap": {"type": "float", "low": 0.0, "high": 3.0, "grid": [0.0, 1.0]},
    },
    "fixed": {**LOWDIM_BUDGET},
    # What a user trains without this tool: plain denoising of the noisy data.
    "baseline": {"ambient.tweedie": False, "ambient.consistency": 0.0},
    # The public repository's one shipped configuration: the Tweedie objective, consistency 0.
    "reference": {
        "label": "ambient Tweedie as shipped (Daras et al. 2024: consistency 0)",
        "config": {"ambient.tweedie": True, "ambient.consistency": 0.0},
    },
    "num_samples": 12,
}
