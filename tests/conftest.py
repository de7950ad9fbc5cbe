import os

import torch

# One intra-op thread per test process: the suite's tensors are small, and extra threads only
# spin against each other on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
