import os
import sys
from pathlib import Path

import pytest
import torch

# One intra-op thread per test process: the suite's tensors are small, and extra threads only
# spin against each other on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


# A trial of a few seconds on ring8: what the trainer tests (and a few others) run.
TINY = {
    "data": "ring8",
    "train.steps": 40,
    "train.batch": 64,
    "eval.every": 20,
    "eval.samples": 200,
    "sampler.steps": 10,
    "net.width": 32,
    "net.depth": 1,
}


@pytest.fixture
def tiny() -> dict:
    """A copy of TINY, the few-second ring8 trial."""
    return dict(TINY)


@pytest.fixture
def random_inception_weights():
    """bench/fakes.py's writer of Inception weights with the real shapes and random values (the
    benchmarks that time Inception use it too), for the tests that wire Inception FID offline."""
    bench = str(Path(__file__).resolve().parents[1] / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from fakes import random_inception_weights

    return random_inception_weights
