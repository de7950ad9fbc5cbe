"""Per-trial budgets shared by the spaces (config keys that bound one trial's cost).

Measured on 2 CPU cores: bench/search_default.py and bench/results/search_default.json.
"""

# 8×8 digits: a small UNet, FID from the digits CNN on 500 samples.
IMAGE_BUDGET = {
    "train.steps": 900,
    "train.batch": 64,
    # Evaluations at 300, 600 and 900 (the default runs every trial to the end); with
    # --scheduler asha, its rungs at 300·3^k: at step 100 the FIDs are 12-19 (median 15.7) and
    # rank with the final ones at ρ 0.63, at 300 (median 4.5) at ρ 0.85 over the space
    # (bench/results/learning_curves.json, bench/results/search_strategies.json).
    "eval.every": 300,
    "eval.samples": 500,
    "sampler.steps": 20,
    "net.width": 16,
    # An EMA horizon of ~50 steps: the first rung sees trained weights.
    "train.ema": 0.98,
    "tiw.disc_steps": 1500,  # at most: it stops early on its held-out split
}

# 32×32 CIFAR-10 on one GPU per trial (not measured here: no GPU in CI). ASHA's rungs at
# 2000 · 3^k stay on evaluation steps.
GPU_IMAGE_BUDGET = {
    "train.steps": 18000,
    "train.batch": 128,
    "train.lr": 2e-4,
    "train.warmup": 1000,
    "train.ema": 0.999,
    "eval.every": 2000,
    "eval.samples": 10000,
    "sampler.steps": 50,
    "net.width": 64,
    "tiw.disc_steps": 3000,
    "data.download": True,
}

# 2-D mixtures: an MLP, exact NLL under the true mixture on 2000 samples.
LOWDIM_BUDGET = {
    "train.steps": 1000,
    "train.batch": 256,
    "eval.every": 250,
    "eval.samples": 2000,
    "sampler.steps": 50,
    "tiw.disc_steps": 500,
}

# --smoke-test: seconds per trial, whatever the space (applied over the space's budget).
SMOKE = {
    "train.steps": 40,
    "train.batch": 32,
    "eval.every": 20,
    "eval.samples": 200,
    "sampler.steps": 8,
    "net.width": 16,
    "net.depth": 1,
    "tiw.disc_steps": 20,
    "train.log_every": 4,  # 10 logged points of loss/... per finished trial
}
SMOKE_NUM_SAMPLES = 4
