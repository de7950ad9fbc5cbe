"""Tests for tuner/evaluation/extractors.py: the digits CNN as torch-fidelity's feature extractor, and where
the Inception weights come from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as inception_module

from tuner.data.presets import load_digits_split
from tuner.evaluation import extractors
from tuner.evaluation.extractors import DIGITS_EXTRACTOR, FeatureExtractorDigitsCNN, load_digits_cnn
from tuner.evaluation.metrics import to_uint8

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    return load_digits_split()


def test_digits_classifier_accuracy_matches_committed_json(digits: tuple) -> None:
    _, _, x_test, y_test = digits
    net = load_digits_cnn()
    with torch.no_grad():
        acc = float((net(x_test).argmax(1) == y_test).float().mean())
        # through torch-fidelity's uint8 RGB input, as FID sees the images
        fe = FeatureExtractorDigitsCNN(DIGITS_EXTRACTOR, ["penultimate", "logits"])
        feats, logits = fe(to_uint8(x_test))
    acc_u8 = float((logits.argmax(1) == y_test).float().mean())
    stated = json.loads((ROOT / "bench/results/digits_classifier.json").read_text())["raw"]
    assert acc >= 0.97 and acc_u8 >= 0.97
    assert acc == pytest.approx(stated["test_accuracy"], abs=1e-6)
    assert feats.shape == (len(x_test), 64)
    # feature_scale gives the FID features unit mean square (on the training split)
    assert 0.5 < float(feats.square().mean()) < 2.0


def test_digits_extractor_resizes_other_image_sizes(digits: tuple) -> None:
    x_test, y_test = digits[2][:100], digits[3][:100]
    big = torch.nn.functional.interpolate(x_test, size=(32, 32), mode="nearest")
    fe = FeatureExtractorDigitsCNN(DIGITS_EXTRACTOR, ["logits"])
    with torch.no_grad():
        (logits,) = fe(to_uint8(big))
    assert float((logits.argmax(1) == y_test).float().mean()) >= 0.95


def test_inception_weights_found_in_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = tmp_path / "checkpoints" / os.path.basename(inception_module.URL_INCEPTION_V3)
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert extractors.inception_weights(None) == str(cached)
