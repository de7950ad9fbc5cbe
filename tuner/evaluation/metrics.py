"""Evaluation metrics, reported under eval/... keys.

Images: FID and KID through torch-fidelity's `calculate_metrics` on in-memory uint8 tensors, with
the reference set's features and statistics cached by torch-fidelity under a name built from the
dataset, the reference set's content and the feature extractor. Digits use the committed digits
CNN ("digits-cnn"); natural images use torch-fidelity's Inception-v3 ("inception-v3-compat").

Low-dimensional data: exact NLL under the true mixture, MMD, sliced Wasserstein distance and
mode-fraction errors.
"""

import contextlib
import hashlib
import math
import os
import re
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity import KEY_METRIC_FID, KEY_METRIC_KID_MEAN, calculate_metrics

from models.analytic import GaussianMixture
from tuner.data.presets import preset_entry
from tuner.evaluation.extractors import (
    DIGITS_EXTRACTOR,
    DIGITS_WEIGHTS,
    INCEPTION_EXTRACTOR,
    inception_weights,
    load_digits_cnn,
    uint8_to_digits,
)

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "diffsearch", "fid")

# The eval/... metrics an evaluation can report, each with the direction that is better. The one
# list: image_metrics and lowdim_metrics report exactly `reported_metrics(...)` of it, and the
# search takes its default, its mode and its check of --metric from it (`preset_metrics`).
FID, KID, NLL, MMD, SWD = "eval/fid", "eval/kid", "eval/nll", "eval/mmd", "eval/swd"
MODE_ERROR, MINORITY_FRACTION, MINORITY_ERROR = (
    "eval/mode_error",
    "eval/minority_fraction",
    "eval/minority_error",
)
METRICS: dict[str, str] = {
    FID: "min",
    KID: "min",
    NLL: "min",
    MMD: "min",
    SWD: "min",
    MODE_ERROR: "min",
    MINORITY_FRACTION: "max",
    MINORITY_ERROR: "min",
}
KID_SUBSET_SIZE = 1000  # torch-fidelity's default; lowered to the sample count when larger
KID_SUBSETS = 100
# Images per extractor batch, by (extractor, on CUDA): torch-fidelity's 64 for Inception on the
# CPU, larger batches on a GPU (a choice not yet timed on one: bench/gpu_trial.py times the
# evaluation); the 8×8 digits CNN takes whole evaluations at once.
EXTRACTOR_BATCH = {
    (INCEPTION_EXTRACTOR, False): 64,
    (INCEPTION_EXTRACTOR, True): 256,
    (DIGITS_EXTRACTOR, False): 1000,
    (DIGITS_EXTRACTOR, True): 1000,
}


def default_extractor(dataset_name: str) -> str:
    """The digits CNN for the digits presets, torch-fidelity's Inception-v3 otherwise."""
    return DIGITS_EXTRACTOR if dataset_name.startswith("digits") else INCEPTION_EXTRACTOR


def reported_metrics(
    kind: str, extractor: str | None = None, minority: bool = False, kid: bool = True
) -> tuple[str, ...]:
    """The eval/... names one evaluation reports, in order.

    Args:
        kind: "image" or "lowdim" (a dataset's kind).
        extractor: the image feature extractor; only the digits CNN also classifies, which gives
            the mode and minority metrics.
        minority: the data tracks a minority component or classes (the biased presets).
        kid: images: KID is computed too.
    """
    if kind == "lowdim":
        names = [NLL, MMD, SWD, MODE_ERROR]
    else:
        classifies = extractor == DIGITS_EXTRACTOR
        names = [FID] + ([KID] if kid else []) + ([MODE_ERROR] if classifies else [])
        minority = minority and classifies
    return tuple(names + ([MINORITY_FRACTION, MINORITY_ERROR] if minority else []))


def preset_metrics(data: str) -> tuple[str, ...]:
    """The eval/... names the trainer reports for a data preset (or folder:PATH)."""
    info = preset_entry(data).info
    extractor = default_extractor(data) if info["kind"] == "image" else None
    return reported_metrics(info["kind"], extractor, minority=bool(info.get("minority")))


def to_uint8(images: Tensor) -> Tensor:
    """(N, C, H, W) float in [-1, 1] -> (N, 3, H, W) uint8 on the CPU (grey repeated to RGB).
    NaN pixels become black, like -1."""
    x = images.detach().float().cpu().nan_to_num(nan=-1.0).clamp(-1, 1)
    x = x.add(1).mul(127.5).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


class ImageTensorDataset(Dataset):
    """A uint8 image tensor as the torch Dataset torch-fidelity takes as input1 / input2."""

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


def reference_cache_name(dataset_name: str, reference: Tensor, weights: str | os.PathLike) -> str:
    """Cache name of a reference set: dataset, size and a hash of its uint8 pixels and of the
    feature extractor's weights file (path, size, mtime). torch-fidelity appends the extractor."""
    digest = hashlib.sha1(reference.numpy().tobytes())
    st = os.stat(weights)
    digest.update(f"{os.path.abspath(weights)}:{st.st_size}:{st.st_mtime_ns}".encode())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset_name).strip("_")
    return f"{safe}-n{len(reference)}-{digest.hexdigest()[:12]}"


def kid_options(n_samples: int, n_reference: int) -> dict[str, int]:
    """KID subset size and count that torch-fidelity accepts for these set sizes.

    KID is the mean of an unbiased MMD² over random subsets of size m drawn from both sets; the
    mean approximates the statistic on the whole sets. Drawn without replacement, a subset's
    spread around the whole-set value carries the finite-population factor (1 − m/N), so a
    subset that is most of its set is most of the statistic: KID_SUBSETS · (1 − m/N) subsets
    (N the set that a subset leaves most of out) average out as much subset noise as
    KID_SUBSETS subsets of a set many times larger. Both sets used whole: one subset.
    """
    size = min(KID_SUBSET_SIZE, n_samples, n_reference)
    left_out = 1.0 - size / max(n_samples, n_reference)
    subsets = max(1, math.ceil(KID_SUBSETS * left_out - 1e-9))
    return {"kid_subset_size": size, "kid_subsets": subsets}


@lru_cache(maxsize=1)
def _digits_classifier() -> torch.nn.Module:
    return load_digits_cnn()


@torch.no_grad()
def digit_class_fractions(images_u8: Tensor) -> Tensor:
    """Fractions of images that the digits CNN assigns to each of the 10 classes, (10,)."""
    pred = _digits_classifier()(uint8_to_digits(images_u8)).argmax(1)
    return torch.bincount(pred, minlength=10).float() / max(len(pred), 1)


def image_metrics(
    samples: Tensor,
    dataset_name: str,
    reference: Tensor,
    extractor: str,
    kid: bool = True,
    weights_path: str | None = None,
    cache_dir: str | None = None,
    minority: int | Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """FID (and KID) of generated images against a reference set.

    Args:
        samples: generated images (N, C, H, W) in [-1, 1].
        dataset_name: dataset preset name; names the cached reference statistics.
        reference: reference images (M, C, H, W) in [-1, 1], e.g. the test split.
        extractor: "digits-cnn" or "inception-v3-compat" (see `default_extractor`).
        kid: also compute KID (subset size min(1000, N, M)).
        weights_path: Inception weights file (--fid-weights / eval.fid_weights); None means
            torch's hub cache or torch-fidelity's download.
        cache_dir: torch-fidelity cache root; default ~/.cache/diffsearch/fid.
        minority: with "digits-cnn", a class (or classes, e.g. 5..9 for digits_biased) whose
            fraction among the samples is reported.
        device: where the extractor runs: the trial's device ("cuda:1" runs it on GPU 1, in
            batches of EXTRACTOR_BATCH for the device's kind).

    Returns:
        `reported_metrics("image", extractor, minority is not None, kid)`:
        {"eval/fid", "eval/kid"}; with "digits-cnn" also "eval/mode_error" (total variation
        between the classifier's class fractions on samples and on the reference) and, for
        minority not None, "eval/minority_fraction" and "eval/minority_error" (its distance to
        the reference's fraction).
    """
    if samples.dim() != 4 or samples.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} must both be "
            "(N, C, H, W) with the same image shape"
        )
    if len(samples) < 2 or len(reference) < 2:
        raise ValueError("FID needs at least 2 samples and 2 reference images")
    fake, real = to_uint8(samples), to_uint8(reference)
    dev = torch.device(device)
    weights = inception_weights(weights_path) if extractor == INCEPTION_EXTRACTOR else None
    cache_name = reference_cache_name(dataset_name, real, weights or DIGITS_WEIGHTS)
    options = {
        "input1": ImageTensorDataset(fake),
        "input2": ImageTensorDataset(real),
        "input2_cache_name": cache_name,
        "cache_root": os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR),
        "cache": True,
        "fid": True,
        "kid": kid,
        "feature_extractor": extractor,
        "feature_extractor_weights_path": weights,
        "batch_size": EXTRACTOR_BATCH[(extractor, dev.type == "cuda")],
        "cuda": dev.type == "cuda",  # torch-fidelity's "cuda": the current device, set below
        "save_cpu_ram": True,  # no DataLoader worker processes for in-memory tensors
        "verbose": False,
        "rng_seed": 0,
    }
    if kid:
        options.update(kid_options(len(fake), len(real)))
    with torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext():
        out = calculate_metrics(**options)
    values = {FID: float(out[KEY_METRIC_FID])}
    if kid:
        values[KID] = float(out[KEY_METRIC_KID_MEAN])
    if extractor == DIGITS_EXTRACTOR:
        frac, ref = digit_class_fractions(fake), digit_class_fractions(real)
        values[MODE_ERROR] = 0.5 * float((frac - ref).abs().sum())
        if minority is not None:
            classes = [minority] if isinstance(minority, int) else list(minority)
            values[MINORITY_FRACTION] = float(frac[classes].sum())
            values[MINORITY_ERROR] = abs(float(frac[classes].sum() - ref[classes].sum()))
    return {k: values[k] for k in reported_metrics("image", extractor, minority is not None, kid)}


# ---------------------------------------------------------------------------------------------
# Low-dimensional data
# ---------------------------------------------------------------------------------------------


def _subsample(x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    return x if len(x) <= n else x[torch.randperm(len(x), generator=generator)[:n]]


def mmd_rbf(
    x: Tensor, y: Tensor, generator: torch.Generator, scales: tuple[float, ...] = (0.5, 1.0, 2.0)
) -> float:
    """Unbiased MMD² with a sum of RBF kernels (Gretton et al. 2012).

    Bandwidths are `scales` times the median pairwise distance of y (the test set), so they do
    not depend on the samples being scored. Both sets are capped at 2000 points (seeded).
    """
    x = _subsample(x.double(), 2000, generator)
    y = _subsample(y.double(), 2000, generator)
    median = torch.cdist(y[:1000], y[:1000]).median().clamp_min(1e-12)

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(-d2 / (2 * (s * median) ** 2)) for s in scales)

    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    mmd2 = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    mmd2 = mmd2 + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean()
    return float(mmd2)


def sliced_wasserstein(
    x: Tensor, y: Tensor, generator: torch.Generator, projections: int = 256
) -> float:
    """Sliced 2-Wasserstein distance: sqrt of the mean over random unit directions of the squared
    W2 between the 1-D projections, compared at min(N, M, 1000) quantile levels."""
    theta = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    k = min(len(x), len(y), 1000)
    levels = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    qx = torch.quantile(x.double() @ theta, levels, dim=0)  # (k, projections)
    qy = torch.quantile(y.double() @ theta, levels, dim=0)
    return float((qx - qy).square().mean().sqrt())


def lowdim_metrics(
    samples: Tensor,
    truth: GaussianMixture,
    test: Tensor,
    minority: int | None,
    generator_seed: int = 0,
) -> dict[str, float]:
    """Metrics of low-dimensional samples against the true mixture and its test set.

    Args:
        samples: generated points (N, D).
        truth: the clean, unbiased mixture (exact log-density and responsibilities).
        test: held-out points from the truth (M, D), for MMD and SWD.
        minority: component whose fraction is tracked (biased presets), or None.
        generator_seed: seed of the subsampling and of the SWD projections.

    Returns:
        `reported_metrics("lowdim", minority=minority is not None)`:
        eval/nll (mean -log p_truth(samples), exact), eval/mmd (unbiased MMD², can be slightly
        negative), eval/swd, eval/mode_error (total variation between the samples' mode
        fractions and truth.weights) and, for minority not None, eval/minority_fraction and
        eval/minority_error (|fraction - its unbiased weight|).
        Non-finite samples (a diverged model) make eval/nll infinite, count in no mode, and are
        left out of MMD and SWD (infinite when fewer than 2 finite samples remain).
    """
    x = samples.detach().float().cpu()
    test = test.detach().float().cpu()
    gen = torch.Generator().manual_seed(generator_seed)
    finite = torch.isfinite(x).all(dim=1)
    xf = x[finite]
    kept = len(xf) / max(len(x), 1)
    fractions = truth.mode_fractions(xf) * kept
    weights = truth.weights
    enough = len(xf) >= 2
    values = {
        NLL: float(-truth.log_prob(xf).double().mean()) if finite.all() else math.inf,
        MMD: mmd_rbf(xf, test, gen) if enough else math.inf,
        SWD: sliced_wasserstein(xf, test, gen) if enough else math.inf,
        # total variation, with the non-finite samples as one more category of weight 0
        MODE_ERROR: 0.5 * (float((fractions - weights).abs().sum()) + 1.0 - kept),
    }
    if minority is not None:
        values[MINORITY_FRACTION] = float(fractions[minority])
        values[MINORITY_ERROR] = abs(float(fractions[minority] - weights[minority]))
    return {k: values[k] for k in reported_metrics("lowdim", minority=minority is not None)}
