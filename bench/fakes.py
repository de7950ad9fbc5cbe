"""Stand-ins for what a test or a timing run lacks here: Inception weights of the real shapes.

Development code (it patches torch-fidelity with unittest.mock), shared by the benchmarks that time Inception
(bench/eval_cost.py, bench/gpu_trial.py) and the tests that wire it (tests/tuner/test_metrics.py,
test_train.py).
"""

from __future__ import annotations

import math
import os
from unittest import mock

import torch
from torch_fidelity import feature_extractor_inceptionv3 as inception_module
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from tuner.evaluation.extractors import INCEPTION_EXTRACTOR


def random_inception_weights(
    path: str | os.PathLike, live_features: int | None = None, seed: int = 0
) -> None:
    """Save Inception weights with the real keys and shapes but random values (He-init
    convolutions, so the features do not vanish) — for wiring tests and timing only.

    With `live_features`, all other pool features are switched off (ReLU of a very negative BN
    bias); LAPACK's balancing then shrinks the eigvals in torch-fidelity's FID to those features.
    """
    with (
        mock.patch.object(inception_module, "load_state_dict_from_url", return_value={}),
        mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", return_value=None),
    ):
        net = FeatureExtractorInceptionV3(INCEPTION_EXTRACTOR, ["2048"])
    gen = torch.Generator().manual_seed(seed)
    state = net.state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):
            value.normal_(0.0, math.sqrt(2.0 / value[0].numel()), generator=gen)
    if live_features is not None:  # the last block's output convolutions: 320 + 4*384 + 192
        for branch in ("1x1", "3x3_2a", "3x3_2b", "3x3dbl_3a", "3x3dbl_3b", "_pool"):
            state[f"Mixed_7c.branch{branch}.bn.bias"].fill_(-1e4)
        state["Mixed_7c.branch1x1.bn.bias"][:live_features] = 0.0
    torch.save(state, path)
