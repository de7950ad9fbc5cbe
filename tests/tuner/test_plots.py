"""Tests for tuner/plots.py: sample grids, point clouds and the effective-weighting plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from models.schedules import CosineDensity, EDMDensity
from models.weighting import Constant, Debiased, Normalized
from tuner.data import GaussianMixture
from tuner.plots import save_sample_grid, save_weighting_plot, weighting_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("n", "channels", "side", "shape"),
    [
        (100, 1, 8, (274, 274)),  # 64 shown, 8x8 grid of 32-px cells (8 px x 4) + 2-px padding
        (10, 3, 32, (104, 138)),  # 3 rows x 4 columns of 32-px cells
    ],
)
def test_image_grid_layout(n: int, channels: int, side: int, shape: tuple, tmp_path: Path) -> None:
    samples = torch.rand(n, channels, side, side) * 2 - 1
    path = save_sample_grid(samples, tmp_path / "grid.png", "image")
    image = plt.imread(path)
    assert image.shape[:2] == shape


def test_image_grid_maps_minus_one_to_black_and_one_to_white(tmp_path: Path) -> None:
    samples = torch.stack([-torch.ones(1, 8, 8), torch.ones(1, 8, 8)])
    image = plt.imread(save_sample_grid(samples, tmp_path / "g.png", "image"))
    # two cells side by side after a 2-px border: cell 0 black, cell 1 white
    assert image[2:34, 2:34, :3].max() == 0.0
    assert image[2:34, 36:68, :3].min() == 1.0


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("truth_kind", [None, "points", "mixture"])
def test_point_cloud_plots(dim: int, truth_kind: str | None, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    mixture = GaussianMixture(
        [0.5, 0.5], torch.randn(2, dim, generator=gen), torch.eye(dim)[None].repeat(2, 1, 1)
    )
    truth = {None: None, "points": mixture.sample(300, gen), "mixture": mixture}[truth_kind]
    samples = mixture.sample(500, gen)
    samples[0] = float("nan")  # diverged samples do not break the picture
    samples[1] = 1e6
    path = save_sample_grid(samples, tmp_path / "sub" / "cloud.png", "lowdim", truth=truth)
    assert _is_png(path)


def test_sample_grid_rejects_wrong_kind_or_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sample kind"):
        save_sample_grid(torch.zeros(4, 2), tmp_path / "x.png", "video")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        save_sample_grid(torch.zeros(4, 2), tmp_path / "x.png", "image")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        save_sample_grid(torch.zeros(4, 1, 8, 8), tmp_path / "x.png", "lowdim")


def test_weighting_curves_of_constant_weighting_is_the_density() -> None:
    density = CosineDensity()
    c = weighting_curves(Constant(), density)
    assert torch.trapezoid(c["effective"], c["logsnr"]) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(c["effective"], c["density"], rtol=1e-3, atol=1e-6)


def test_weighting_curves_follow_w_times_q() -> None:
    density = EDMDensity()
    w = Normalized(Debiased(), density)
    c = weighting_curves(w, density)
    ratio = c["effective"] / (c["density"] * c["weight"])
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-6)  # one normalising constant
    # the debiased weighting SNR^-1/2 moves the effective weight to lower log-SNR than q
    mean_eff = torch.trapezoid(c["logsnr"] * c["effective"], c["logsnr"])
    mean_q = torch.trapezoid(c["logsnr"] * c["density"], c["logsnr"])
    assert mean_eff < mean_q


def test_save_weighting_plot(tmp_path: Path) -> None:
    path = save_weighting_plot(Debiased(), CosineDensity(), tmp_path / "w" / "weighting.png")
    assert _is_png(path)
    assert plt.imread(path).shape[:2] == (400, 1000)
