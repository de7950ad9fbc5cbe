"""Tests for tuner/evaluation/metrics.py: digits FID/KID, Inception wiring, low-dim metrics (the feature
extractors themselves: tests/tuner/test_extractors.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from models.analytic import GaussianMixture
from tuner.data.presets import load_digits_split
from tuner.evaluation import extractors, metrics
from tuner.evaluation.extractors import (
    DIGITS_EXTRACTOR,
    INCEPTION_EXTRACTOR,
)
from tuner.evaluation.metrics import (
    default_extractor,
    image_metrics,
    kid_options,
    lowdim_metrics,
    sliced_wasserstein,
    to_uint8,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    return load_digits_split()


@pytest.fixture(scope="module")
def halves(digits: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x_test = digits[2]
    perm = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))
    return x_test[perm[:225]], x_test[perm[225:]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("fid_cache"))


def _fid(samples: torch.Tensor, reference: torch.Tensor, cache: str, **kw: object) -> dict:
    return image_metrics(samples, "digits", reference, DIGITS_EXTRACTOR, cache_dir=cache, **kw)


def test_to_uint8_maps_range_and_repeats_grey() -> None:
    x = torch.tensor([-1.0, -2.0, 0.0, 1.0, 3.0, float("nan")]).reshape(1, 1, 1, 6)
    u = to_uint8(x)
    assert u.dtype == torch.uint8 and u.shape == (1, 3, 1, 6)
    assert u[0, :, 0].tolist() == [[0, 0, 128, 255, 255, 0]] * 3


def test_default_extractor() -> None:
    assert default_extractor("digits") == default_extractor("digits_biased") == DIGITS_EXTRACTOR
    assert default_extractor("cifar10") == default_extractor("folder:/x") == INCEPTION_EXTRACTOR


# --- digits FID / KID ----------------------------------------------------------------------------


def test_fid_of_test_split_against_itself_is_zero(digits: tuple, cache: str) -> None:
    x_test = digits[2]
    m = _fid(x_test, x_test, cache)
    assert abs(m["eval/fid"]) < 1e-6  # measured: |FID| ~ 1e-11 (float64 eigvals floor)
    assert m["eval/mode_error"] == 0.0


def test_fid_small_for_disjoint_half_large_for_noise_and_shifts(halves: tuple, cache: str) -> None:
    a, b = halves
    gen = torch.Generator().manual_seed(1)
    half = _fid(a, b, cache)
    noise = _fid(torch.rand(a.shape, generator=gen) * 2 - 1, b, cache)
    brighter = _fid((a + 0.5).clamp(-1, 1), b, cache)
    rolled = _fid(torch.roll(a, 2, dims=-1), b, cache)
    # measured: half 0.59, noise 22.3, brighter 3.9, rolled 7.9 (same 225 vs 225 sizes)
    assert 0 < half["eval/fid"] < 1.0
    assert noise["eval/fid"] > 20 * half["eval/fid"]
    assert brighter["eval/fid"] > 4 * half["eval/fid"]
    assert rolled["eval/fid"] > 4 * half["eval/fid"]
    assert noise["eval/kid"] > brighter["eval/kid"] > half["eval/kid"]
    assert noise["eval/mode_error"] > 0.3 > half["eval/mode_error"]


def test_reference_statistics_cached_per_reference(halves: tuple, tmp_path: Path) -> None:
    a, b = halves
    first = _fid(a, b, str(tmp_path))
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2  # features and FID statistics of the reference only
    assert all(n.startswith("digits-n225-") and "-digits-cnn-" in n for n in names)
    assert _fid(a, b, str(tmp_path)) == first  # served from the cache
    assert sorted(os.listdir(tmp_path)) == names
    _fid(a, a, str(tmp_path))  # another reference set: its own entry
    assert len(os.listdir(tmp_path)) == 4


def test_kid_with_few_samples(digits: tuple, cache: str) -> None:
    x_test = digits[2]
    m = _fid(x_test[:20], x_test, cache)
    assert math.isfinite(m["eval/kid"]) and math.isfinite(m["eval/fid"])
    m = _fid(x_test[:2], x_test[:3], cache, kid=True)
    assert math.isfinite(m["eval/kid"])
    assert "eval/kid" not in _fid(x_test[:20], x_test, cache, kid=False)


@pytest.mark.parametrize(
    ("n", "m", "size", "subsets"),
    [
        (20, 450, 20, 96),  # subsets leave most of the reference out: ~100 of them
        (450, 450, 450, 1),  # both sets whole: every subset is the same
        (500, 450, 450, 10),  # the default search's 500 samples: each subset is 90 % of them
        (5000, 450, 450, 91),
        (5000, 5000, 1000, 80),
    ],
)
def test_kid_options(n: int, m: int, size: int, subsets: int) -> None:
    assert kid_options(n, m) == {"kid_subset_size": size, "kid_subsets": subsets}


def test_fewer_kid_subsets_of_nearly_whole_sets_keep_kid(
    digits: tuple, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x_train, _, x_test, _ = digits
    noise = torch.randn(500, *x_train.shape[1:], generator=torch.Generator().manual_seed(0))
    fake = (x_train[:500] + 0.3 * noise).clamp(-1, 1)
    adapted = _fid(fake, x_test, cache)["eval/kid"]  # 10 subsets of 450
    monkeypatch.setattr(
        metrics, "kid_options", lambda n, m: {"kid_subset_size": 450, "kid_subsets": 100}
    )
    full = _fid(fake, x_test, cache)["eval/kid"]
    # measured: 0.0818 against 0.0790 with 100 subsets
    assert full > 0.05 and abs(adapted - full) < 0.1 * full


def test_minority_fraction_of_one_class(digits: tuple, cache: str) -> None:
    x_test, y_test = digits[2], digits[3]
    threes = x_test[y_test == 3]
    m = _fid(threes, x_test, cache, minority=3)
    assert m["eval/minority_fraction"] > 0.95
    assert m["eval/mode_error"] > 0.85  # 1 - 0.1 for a perfect classifier
    assert m["eval/minority_error"] == pytest.approx(m["eval/minority_fraction"] - 0.1, abs=0.02)
    assert _fid(threes, x_test, cache, minority=5)["eval/minority_fraction"] < 0.05
    # a group of classes, as for digits_biased (5..9): the whole test split has half of them
    group = _fid(x_test, x_test, cache, minority=range(5, 10))
    assert group["eval/minority_fraction"] == pytest.approx(0.5, abs=0.01)
    assert group["eval/minority_error"] == 0.0


def test_image_metrics_rejects_mismatched_shapes(digits: tuple, cache: str) -> None:
    x_test = digits[2]
    with pytest.raises(ValueError, match="same image shape"):
        _fid(x_test[:, :, :4], x_test, cache)
    with pytest.raises(ValueError, match="at least 2"):
        _fid(x_test[:1], x_test, cache)


# --- Inception wiring (no real weights here) -----------------------------------------------------


def test_inception_wiring_with_weights_file(tmp_path: Path, random_inception_weights) -> None:
    # real keys and shapes, random values; 16 live features keep torch-fidelity's 2048x2048
    # eigvals at ~1 s instead of ~40 s (both measured on 2 busy CPU cores)
    weights = tmp_path / "inception.pth"
    random_inception_weights(weights, live_features=16)
    gen = torch.Generator().manual_seed(0)
    # two images a side: Inception on CPU costs ~0.5-3 s per image here
    a = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    b = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    cache = tmp_path / "cache"
    m = image_metrics(
        a, "cifar10", b, INCEPTION_EXTRACTOR, weights_path=str(weights), cache_dir=str(cache)
    )
    assert set(m) == {"eval/fid", "eval/kid"}
    assert m["eval/fid"] > 0 and math.isfinite(m["eval/kid"]) and m["eval/kid"] != 0
    assert any(n.endswith("inception-v3-compat-stat-fid-2048.pt") for n in os.listdir(cache))


def test_inception_offline_without_weights_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, dst: str) -> None:
        raise URLError("no network")

    monkeypatch.setattr(extractors, "_download", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    x = torch.zeros(2, 3, 32, 32)
    for path in (None, str(tmp_path / "missing.pth")):
        with pytest.raises(ValueError, match="--fid-weights PATH") as err:
            image_metrics(x, "cifar10", x, INCEPTION_EXTRACTOR, weights_path=path)
        assert "eval.fid_weights" in str(err.value) and "\n" not in str(err.value)


# --- low-dimensional metrics ---------------------------------------------------------------------


def _two_modes(w_minority: float = 0.5) -> GaussianMixture:
    eye = 0.1 * torch.eye(2)
    return GaussianMixture(
        [1 - w_minority, w_minority], [[-3.0, 0.0], [3.0, 0.0]], torch.stack([eye, eye])
    )


def test_nll_of_gaussian_samples_is_its_entropy() -> None:
    dim = 3
    truth = GaussianMixture([1.0], torch.zeros(1, dim), torch.eye(dim)[None])
    gen = torch.Generator().manual_seed(0)
    x = truth.sample(4000, gen)
    m = lowdim_metrics(x, truth, truth.sample(1000, gen), None)
    entropy = 0.5 * dim * math.log(2 * math.pi * math.e)
    assert m["eval/nll"] == pytest.approx(entropy, abs=0.08)  # 4 standard errors
    assert "eval/minority_fraction" not in m


def test_lowdim_metrics_separate_truth_from_shifted_samples() -> None:
    truth = _two_modes()
    gen = torch.Generator().manual_seed(0)
    test = truth.sample(2000, gen)
    good = lowdim_metrics(truth.sample(2000, gen), truth, test, minority=1)
    bad = lowdim_metrics(
        truth.sample(2000, gen) + torch.tensor([0.0, 2.0]), truth, test, minority=1
    )
    assert abs(good["eval/mmd"]) < 0.01 < bad["eval/mmd"]
    # SWD of two ±3 modes is sensitive to their sampled weights (measured 0.31 for this seed)
    assert good["eval/swd"] < 0.5 and bad["eval/swd"] > 2 * good["eval/swd"]
    assert bad["eval/nll"] > good["eval/nll"] + 1.0
    assert good["eval/mode_error"] < 0.05
    assert good["eval/minority_fraction"] == pytest.approx(0.5, abs=0.05)


def test_mode_and_minority_fractions_of_one_mode() -> None:
    truth = _two_modes(0.5)
    one_mode = GaussianMixture([1.0], [[-3.0, 0.0]], 0.1 * torch.eye(2)[None]).sample(500)
    m = lowdim_metrics(one_mode, truth, truth.sample(500), minority=1)
    assert m["eval/minority_fraction"] == 0.0
    assert m["eval/minority_error"] == pytest.approx(0.5)
    assert m["eval/mode_error"] == pytest.approx(0.5)


def test_lowdim_metrics_with_diverged_samples() -> None:
    truth = _two_modes(0.5)
    x = truth.sample(400, torch.Generator().manual_seed(0))
    x[:100] = float("nan")
    x[100, 0] = float("inf")
    m = lowdim_metrics(x, truth, truth.sample(400), minority=1)
    assert m["eval/nll"] == math.inf
    assert math.isfinite(m["eval/mmd"]) and math.isfinite(m["eval/swd"])
    # 101 of 400 samples are in no mode: at least that mass is missing from the modes
    assert m["eval/mode_error"] >= 101 / 400 - 1e-6  # float32 fractions
    all_nan = lowdim_metrics(torch.full((10, 2), float("nan")), truth, truth.sample(10), 1)
    assert all_nan["eval/mmd"] == all_nan["eval/swd"] == math.inf
    assert all_nan["eval/mode_error"] == 1.0 and all_nan["eval/minority_fraction"] == 0.0


@pytest.mark.parametrize("dim", [2, 5])
def test_sliced_wasserstein_of_a_shift(dim: int) -> None:
    # y = x + m: every projection differs by θ·m, so SW2² = E_θ[(θ·m)²] = |m|²/D
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, dim, generator=gen)
    shift = torch.randn(dim, generator=gen)
    sw = sliced_wasserstein(x, x + shift, torch.Generator().manual_seed(1), projections=2000)
    assert sw == pytest.approx(float(shift.norm()) / math.sqrt(dim), rel=0.05)
    assert sliced_wasserstein(x, x, torch.Generator().manual_seed(1)) < 1e-9
