"""Tests for tuner/evaluation/plots.py: sample grids, point clouds, the effective-weighting plot and the
search curves."""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from models.analytic import GaussianMixture
from models.schedules import CosineDensity, EDMDensity, LogisticDensity
from models.weighting import Constant, Debiased, Normalized, Parametric, Sigmoid
from tuner.evaluation.plots import (
    CAPTION_PX,
    MIN_SIDE_PX,
    describe,
    save_sample_grid,
    save_search_curves,
    save_weighting_plot,
    search_curves_figure,
    weighting_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("n", "channels", "side", "shape"),
    [
        (100, 1, 8, (530, 530)),  # 64 shown, 8x8 grid of 64-px cells (8 px x 8) + 2-px padding
        (10, 3, 32, (392, 522)),  # 3 rows x 4 columns of 128-px cells (32 px x 4)
        (1, 1, 8, (512, 512)),  # one 512-px image (8 px x 64), no padding around a single one
        (64, 3, 64, (530, 530)),  # 64-px images are not enlarged: already 8 x 66 + 2 wide
    ],
)
def test_image_grid_layout(n: int, channels: int, side: int, shape: tuple, tmp_path: Path) -> None:
    samples = torch.rand(n, channels, side, side) * 2 - 1
    path = save_sample_grid(samples, tmp_path / "grid.png", "image")
    image = plt.imread(path)
    assert image.shape[:2] == shape
    assert max(shape) >= MIN_SIDE_PX


def test_image_grid_maps_minus_one_to_black_and_one_to_white(tmp_path: Path) -> None:
    samples = torch.stack([-torch.ones(1, 8, 8), torch.ones(1, 8, 8)])
    image = plt.imread(save_sample_grid(samples, tmp_path / "g.png", "image"))
    # two 256-px cells (8 px x 32) side by side after a 2-px border: cell 0 black, cell 1 white
    assert image.shape[:2] == (260, 518)
    assert image[2:258, 2:258, :3].max() == 0.0
    assert image[2:258, 260:516, :3].min() == 1.0


def test_image_grid_enlarges_each_pixel_to_a_square(tmp_path: Path) -> None:
    sample = torch.full((1, 1, 8, 8), -1.0)
    sample[0, 0, 3, 5] = 1.0  # one white pixel at row 3, column 5
    image = plt.imread(save_sample_grid(sample, tmp_path / "g.png", "image"))[..., 0]
    assert image.shape == (512, 512)  # one image: no padding; each sample pixel a 64-px square
    white = np.argwhere(image == 1.0)
    assert white.min(0).tolist() == [3 * 64, 5 * 64] and white.max(0).tolist() == [
        4 * 64 - 1,
        6 * 64 - 1,
    ]


def test_caption_is_a_strip_under_the_unchanged_grid(tmp_path: Path) -> None:
    samples = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bare = plt.imread(save_sample_grid(samples, tmp_path / "a.png", "image"))
    captioned = plt.imread(
        save_sample_grid(samples, tmp_path / "b.png", "image", caption="step 300 · eval/fid 3.21")
    )
    assert captioned.shape[0] == bare.shape[0] + CAPTION_PX and captioned.shape[1] == bare.shape[1]
    assert np.array_equal(captioned[: bare.shape[0], :, :3], bare[..., :3])
    strip = captioned[bare.shape[0] :, :, :3]
    assert strip.min() < 0.3  # dark text ...
    assert (strip.mean(-1) > 0.99).mean() > 0.8  # ... on a white strip


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
    path = save_sample_grid(
        samples, tmp_path / "sub" / "cloud.png", "lowdim", truth=truth, caption="step 40"
    )
    assert _is_png(path)
    assert min(plt.imread(path).shape[:2]) >= MIN_SIDE_PX


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
    assert plt.imread(path).shape[:2] == (460, 1100)


def test_save_weighting_plot_labels_both_axes_of_both_panels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    save_weighting_plot(Debiased(), CosineDensity(), tmp_path / "w.png")
    (fig,) = saved
    for ax in fig.axes:
        assert ax.get_xlabel() == "log-SNR λ" and ax.get_ylabel() and ax.get_title()
    assert fig.axes[1].get_ylabel().startswith("w(λ)")
    assert fig._suptitle.get_text().startswith("w: debiased (snr_max=1e+04)")


@pytest.mark.parametrize(
    ("obj", "text"),
    [
        (Constant(), "constant"),
        (Debiased(snr_max=1000.0), "debiased (snr_max=1e+03)"),
        (
            Parametric(p=0.5234567, k=1.2345678, clamp=5.0),
            "parametric (p=0.523, k=1.23, clamp=5, snr_max=1e+04)",
        ),
        (CosineDensity(), "cosine (λ in [-15, 15])"),
        (LogisticDensity(loc=-1.23456, scale=2.0), "logistic (loc=-1.23, scale=2, λ in [-15, 15])"),
    ],
)
def test_describe_names_parameters_to_three_digits(obj: object, text: str) -> None:
    assert describe(obj) == text


def test_describe_normalized_and_nested_density() -> None:
    density = CosineDensity()
    text = describe(Normalized(Parametric(p=1 / 3), density))
    assert text.startswith(
        "parametric (p=0.333, k=0, clamp=0, snr_max=1e+04), divided by E_q[w] = "
    )
    assert not re.search(r"\d{5,}", text)  # no 16-digit floats
    assert describe(Sigmoid(bias=0.5, density=density)) == (
        "sigmoid (bias=0.5, density=cosine (λ in [-15, 15]))"
    )


def test_search_curves_draw_each_trial_and_each_rung(tmp_path: Path) -> None:
    histories = {
        "a": [(20, 5.0), (60, 3.0), (180, 2.0)],  # finished
        "b": [(20, 6.0)],  # stopped at the first rung
        "c": [(20, 4.0), (60, float("nan"))],  # its NaN point is left out
        "d": [(20, float("inf"))],  # no finite point: no line
    }
    fig = search_curves_figure(histories, "eval/fid", [20, 60], labels={"a": "p=0.5 · a"})
    (ax,) = fig.axes
    rungs = [ln for ln in ax.lines if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 2]
    assert sorted(float(ln.get_xdata()[0]) for ln in rungs) == [20.0, 60.0]
    curves = {ln.get_label(): ln for ln in ax.lines if ln.get_marker() == "o"}
    assert set(curves) == {"p=0.5 · a", "b", "c"}
    assert list(curves["p=0.5 · a"].get_ydata()) == [5.0, 3.0, 2.0]
    assert list(curves["c"].get_xdata()) == [20]
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "eval/fid"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "p=0.5 · a" and "ASHA rungs: steps 20, 60" in legend  # lowest first
    plt.close(fig)
    path = save_search_curves(histories, tmp_path / "curves.png", "eval/fid", [20, 60])
    assert _is_png(path) and max(plt.imread(path).shape[:2]) >= MIN_SIDE_PX


def test_search_curves_name_only_the_best_trials_in_the_legend() -> None:
    histories = {f"t{i:02d}": [(10, float(i))] for i in range(30)}
    fig = search_curves_figure(histories, "eval/nll", [])
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"t{i:02d}" for i in range(16)]
    assert "the best 16 named" in ax.get_title() and math.isclose(len(ax.lines), 60)
    plt.close(fig)
