"""Every random draw of a trial comes from a generator seeded from (seed, stream, step) alone, so
that any step can be replayed: training steps, the one-off preparation (the TIW discriminator)
and evaluation draw from separate streams."""

from __future__ import annotations

import numpy as np
import torch

TRAIN_STREAM, PREPARE_STREAM, EVAL_STREAM = 0, 1, 2


def step_generator(
    seed: int, step: int, stream: int = TRAIN_STREAM, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator on `device` seeded from (seed, stream, step) alone, so any step can be
    replayed; every draw of a step comes from it on the trial's device (no host copies)."""
    state = np.random.SeedSequence([seed, stream, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))
