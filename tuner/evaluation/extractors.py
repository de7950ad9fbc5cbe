"""Feature extractors for FID/KID: a small digits CNN and torch-fidelity's Inception-v3.

The digits CNN (trained by bench/train_digits_classifier.py, weights in tuner/assets/) is
registered with torch-fidelity as "digits-cnn"; its penultimate layer gives the FID features.
Natural images use torch-fidelity's own "inception-v3-compat" extractor, whose weights come from
torch-fidelity's download (cached in torch's hub directory) or from a local file.
"""

import os
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

DIGITS_EXTRACTOR = "digits-cnn"
INCEPTION_EXTRACTOR = "inception-v3-compat"
DIGITS_WEIGHTS = Path(__file__).resolve().parent / "assets" / "digits_cnn.pt"
FID_WEIGHTS_HINT = "pass --fid-weights PATH (config key eval.fid_weights)"


class DigitsCNN(nn.Module):
    """Classifier for 1x8x8 digits in [-1, 1]; `features` is the penultimate layer.

    `feature_scale` (set by the training script to 1 / RMS of the training-set features) makes
    the FID features' mean square 1, so that KID's cubic kernel (x·y/d + 1)³ stays well scaled.
    """

    def __init__(self, width: int = 32, features: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 2x2
            nn.Flatten(),
            nn.Linear(8 * width, features),
            nn.GELU(),
        )
        self.head = nn.Linear(features, classes)
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: Tensor) -> Tensor:
        """FID features: the penultimate layer times `feature_scale`, (B, features)."""
        return self.body(x) * self.feature_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def load_digits_cnn(path: str | os.PathLike | None = None) -> DigitsCNN:
    """The committed (or given) digits classifier, in eval mode without gradients."""
    net = DigitsCNN()
    net.load_state_dict(torch.load(path or DIGITS_WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False)


def uint8_to_digits(x: Tensor) -> Tensor:
    """torch-fidelity's uint8 (B, 3, H, W) -> the classifier's (B, 1, 8, 8) float in [-1, 1]."""
    x = x.float().div(127.5).sub(1.0).mean(dim=1, keepdim=True)
    if x.shape[-2:] != (8, 8):
        x = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    return x


class FeatureExtractorDigitsCNN(FeatureExtractorBase):
    """torch-fidelity wrapper of `DigitsCNN`: features "penultimate" (FID/KID) and "logits"."""

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(name, features_list)
        self.net = load_digits_cnn(feature_extractor_weights_path)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        hidden = self.net.body(uint8_to_digits(x))
        out = {"penultimate": hidden * self.net.feature_scale, "logits": self.net.head(hidden)}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "penultimate", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[
            metric
        ]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


# Registration happens once per process, on first import.
if DIGITS_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(DIGITS_EXTRACTOR, FeatureExtractorDigitsCNN)


def _download(url: str, dst: str) -> None:
    """torch-fidelity's weights into torch's hub cache (a separate function so tests can stub it)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        torch.hub.download_url_to_file(url, dst, progress=False)
    finally:
        socket.setdefaulttimeout(old)


def inception_weights(weights_path: str | None = None) -> str:
    """Path of the Inception-v3 FID weights: the given file, torch's hub cache, or a download.

    Raises a one-line ValueError naming --fid-weights / eval.fid_weights when none is available.
    """
    if weights_path:
        path = os.path.expanduser(weights_path)
        if not os.path.isfile(path):
            raise ValueError(f"Inception weights file {path!r} not found; {FID_WEIGHTS_HINT}")
        return path
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(URL_INCEPTION_V3))
    if os.path.isfile(cached):
        return cached
    try:
        _download(URL_INCEPTION_V3, cached)
    except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
        raise ValueError(
            f"Inception weights for FID are not available offline ({type(err).__name__}); "
            f"{FID_WEIGHTS_HINT} to torch-fidelity's {os.path.basename(URL_INCEPTION_V3)}"
        ) from None
    return cached
