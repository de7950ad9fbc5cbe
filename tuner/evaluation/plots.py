"""PNG pictures for each trial, ready to be logged as artifacts: sample grids, the effective
weighting w(λ)·q(λ) (Kingma & Gao 2023), and the metric over steps of every trial of a search.
Matplotlib's Agg backend, no display needed. Pictures are sized to be looked at (at least
MIN_SIDE_PX pixels on their longer side) and say what they show in a caption or a title."""

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from models.analytic import GaussianMixture  # noqa: E402
from models.schedules import NoiseDensity  # noqa: E402
from models.weighting import Normalized, Weighting, effective_weighting  # noqa: E402

GRID_IMAGES = 64  # images shown in a sample grid
MIN_SIDE_PX = 512  # a picture's longer side is at least this
PADDING_PX = 2  # white lines between the cells of a grid
CAPTION_PX = 40  # height of the caption strip under a grid
MAX_POINTS = 5000  # points drawn in a scatter
SCATTER_INCHES, DPI = 6.0, 100  # 600 x 600 px
MAX_LEGEND = 16  # trials named in a search-curve legend


def _cell_scale(side: int, per_row: int) -> int:
    """The integer enlargement of `side`-px images, `per_row` to a row, that makes the row at
    least MIN_SIDE_PX wide."""
    return max(1, math.ceil(((MIN_SIDE_PX - PADDING_PX) / per_row - PADDING_PX) / side))


def _caption_strip(caption: str, width: int) -> np.ndarray:
    """A white (CAPTION_PX, width, 3) strip with the caption centred on it, in [0, 1]."""
    fig = plt.figure(figsize=(width / DPI, CAPTION_PX / DPI), dpi=DPI, facecolor="white")
    fig.text(0.5, 0.5, caption, ha="center", va="center", fontsize=13)
    fig.canvas.draw()
    strip = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
    plt.close(fig)
    return strip[:CAPTION_PX, :width]


def _image_grid(samples: Tensor, path: Path, caption: str | None) -> None:
    x = samples[:GRID_IMAGES].detach().float().cpu().clamp(-1, 1).add(1).div(2)
    nrow = max(1, math.ceil(len(x) ** 0.5))
    scale = _cell_scale(max(x.shape[-2:]), min(nrow, len(x)))
    if scale > 1:  # nearest neighbour: every sample pixel stays a sharp square
        x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = make_grid(x, nrow=nrow, padding=PADDING_PX, pad_value=1.0)  # (3, H, W), grey repeated
    image = grid.permute(1, 2, 0).numpy()
    if caption:
        image = np.concatenate([image, _caption_strip(caption, image.shape[1])], axis=0)
    plt.imsave(path, image)


def _scatter(
    samples: Tensor, path: Path, truth: Tensor | GaussianMixture | None, caption: str | None
) -> None:
    x = samples[:MAX_POINTS].detach().float().cpu()
    if isinstance(truth, GaussianMixture):
        ref = truth.sample(MAX_POINTS, torch.Generator().manual_seed(0))
    else:
        ref = None if truth is None else truth[:MAX_POINTS].detach().float().cpu()
    fig, ax = plt.subplots(figsize=(SCATTER_INCHES, SCATTER_INCHES), dpi=DPI)
    if x.shape[1] == 1:
        if ref is not None:
            ax.hist(ref[:, 0].numpy(), bins=60, density=True, color="0.7", label="truth")
        finite = x[torch.isfinite(x[:, 0]), 0]
        ax.hist(finite.numpy(), bins=60, density=True, histtype="step", color="C0", label="samples")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
    else:
        shown = x[:, :2]
        finite = shown[torch.isfinite(shown).all(1)]
        # view: where the truth (or, without it, most of the samples) lies, with a margin
        box = ref[:, :2] if ref is not None else finite
        if len(box) == 0:
            box = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
        lo, hi = torch.quantile(box, 0.005, dim=0), torch.quantile(box, 0.995, dim=0)
        pad = 0.15 * (hi - lo).clamp_min(1e-3)
        lo, hi = lo - pad, hi + pad
        if isinstance(truth, GaussianMixture) and truth.dim == 2:
            g = [torch.linspace(float(lo[i]), float(hi[i]), 200) for i in range(2)]
            gx, gy = torch.meshgrid(g[0], g[1], indexing="xy")
            logp = truth.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2)).reshape(gx.shape)
            ax.contour(gx.numpy(), gy.numpy(), logp.exp().numpy(), levels=8, colors="0.6")
            ax.plot([], [], color="0.6", label="true density")
        elif ref is not None:
            ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.7", label="truth")
        ax.scatter(finite[:, 0], finite[:, 1], s=2, c="C0", alpha=0.6, label="samples")
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        inside = ((finite >= lo) & (finite <= hi)).all(1).sum()
        outside = len(x) - int(inside)
        title = f"{len(x)} samples" + (f", {outside} outside the view" if outside else "")
        ax.set_title(title + ("" if x.shape[1] == 2 else f" (dims 0, 1 of {x.shape[1]})"))
    ax.legend(loc="upper right", fontsize=8)
    if caption:
        fig.text(0.5, 0.015, caption, ha="center", va="bottom", fontsize=12)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_sample_grid(
    samples: Tensor,
    path: str | Path,
    kind: str,
    truth: Tensor | GaussianMixture | None = None,
    caption: str | None = None,
) -> Path:
    """Write a PNG of samples, at least MIN_SIDE_PX pixels on its longer side.

    Args:
        samples: images (N, C, H, W) in [-1, 1] (the first 64 are shown, enlarged by an integer
            factor with nearest neighbour) or points (N, D).
        path: output PNG.
        kind: "image" or "lowdim" (Dataset.kind).
        truth: low-dim only: reference points (M, D) drawn in grey, or the true mixture
            (density contours in 2-D).
        caption: a line under the picture (e.g. "step 300 · eval/fid 3.21").

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        if samples.dim() != 4:
            raise ValueError(f"image samples must be (N, C, H, W); got {tuple(samples.shape)}")
        _image_grid(samples, path, caption)
    elif kind == "lowdim":
        if samples.dim() != 2:
            raise ValueError(f"low-dim samples must be (N, D); got {tuple(samples.shape)}")
        _scatter(samples, path, truth, caption)
    else:
        raise ValueError(f"unknown sample kind {kind!r}; known: 'image', 'lowdim'")
    return path


def weighting_curves(
    weighting: Weighting, density: NoiseDensity, points: int = 601
) -> dict[str, Tensor]:
    """λ grid over the density's support with w(λ)·q(λ) normalised to unit area ("effective"),
    q(λ) ("density") and w(λ) ("weight"), all float64."""
    lam = torch.linspace(density.logsnr_min, density.logsnr_max, points, dtype=torch.float64)
    with torch.no_grad():
        eff = effective_weighting(weighting, density, lam).double()
        q = density.log_prob(lam).exp().double()
        w = weighting(lam).double()
    area = float(torch.trapezoid(eff, lam))
    return {"logsnr": lam, "effective": eff / area if area > 0 else eff, "density": q, "weight": w}


def _number(value: float) -> str:
    return f"{value:.3g}"


def describe(obj: Any) -> str:
    """A weighting or a density in words, its numbers to 3 significant digits:
    "parametric (p=0.523, k=1.23, clamp=0, snr_max=1e+04), divided by E_q[w] = 0.582"."""
    if isinstance(obj, Normalized):
        return f"{describe(obj.w)}, divided by E_q[w] = {_number(obj.mean)}"
    if isinstance(obj, NoiseDensity):
        name = type(obj).__name__.removesuffix("Density").lower()
        extra = [
            f"{k}={_number(v)}"
            for k, v in vars(obj).items()
            if not k.startswith(("_", "logsnr_")) and isinstance(v, (int, float))
        ]
        bounds = f"λ in [{_number(obj.logsnr_min)}, {_number(obj.logsnr_max)}]"
        return f"{name} ({', '.join([*extra, bounds])})"
    name = type(obj).__name__.lower()
    args = []
    for key, value in vars(obj).items():
        if key.startswith("_"):
            continue
        if isinstance(value, bool):
            args.append(f"{key}={str(value).lower()}")
        elif isinstance(value, (int, float)):
            args.append(f"{key}={_number(value)}")
        elif isinstance(value, (Weighting, NoiseDensity)):
            args.append(f"{key}={describe(value)}")
    return f"{name} ({', '.join(args)})" if args else name


def save_weighting_plot(
    weighting: Weighting, density: NoiseDensity, path: str | Path, points: int = 601
) -> Path:
    """Write a PNG of the effective weighting w(λ)·q(λ) over the density's support.

    Left: w(λ)·q(λ) normalised to unit area, beside q(λ); right: w(λ) on a log scale. The
    title names the weighting and the density with their parameters (3 significant digits).

    Args:
        weighting: the loss weighting w(λ) (a callable on a (B,) log-SNR tensor).
        density: the training density q(λ) (`log_prob`, `logsnr_min`, `logsnr_max`).
        path: output PNG.
        points: λ grid size.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = weighting_curves(weighting, density, points)
    lam = c["logsnr"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=DPI)
    left.plot(lam, c["effective"], label="w(λ)·q(λ), unit area")
    left.plot(lam, c["density"], "--", color="0.5", label="q(λ)")
    left.set_xlabel("log-SNR λ")
    left.set_ylabel("density over λ")
    left.set_title("effective weighting w(λ)·q(λ)", fontsize=10)
    left.legend(fontsize=8)
    right.semilogy(lam, c["weight"].clamp_min(1e-30), color="C1")
    right.set_xlabel("log-SNR λ")
    right.set_ylabel("w(λ), log scale")
    right.set_title("loss weight w(λ)", fontsize=10)
    title = f"w: {describe(weighting)}\nq: {describe(density)}"
    fig.suptitle(
        "\n".join(textwrap.fill(line, 120) for line in title.split("\n")), fontsize=10, y=0.97
    )
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path)
    plt.close(fig)
    return path


def search_curves_figure(
    histories: dict[str, list[tuple[int, float]]],
    metric: str,
    rungs: list[int],
    labels: dict[str, str] | None = None,
) -> Any:
    """The figure `save_search_curves` writes (a matplotlib Figure; close it when done)."""
    labels = labels or {}
    curves = {}
    for trial, history in histories.items():
        points = sorted((int(s), float(v)) for s, v in history if math.isfinite(v))
        if points:
            curves[trial] = points
    order = sorted(curves, key=lambda t: min(v for _, v in curves[t]))
    fig, ax = plt.subplots(figsize=(10, 6), dpi=DPI)
    for step in rungs:
        ax.axvline(step, color="0.6", linestyle="--", linewidth=1)
    for i, trial in enumerate(order):
        steps, values = zip(*curves[trial], strict=True)
        label = labels.get(trial, trial) if i < MAX_LEGEND else None
        (line,) = ax.plot(steps, values, marker="o", markersize=3, linewidth=1.2, label=label)
        ax.plot(steps[-1], values[-1], marker="s", markersize=6, color=line.get_color())
    if rungs:
        rung_label = "ASHA rungs: steps " + ", ".join(map(str, rungs))
        ax.plot([], [], color="0.6", linestyle="--", label=rung_label)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    named = f"; the best {MAX_LEGEND} named" if len(order) > MAX_LEGEND else ""
    ax.set_title(f"{metric} of {len(order)} trials over training (last evaluation marked){named}")
    ax.grid(alpha=0.3)
    if order or rungs:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def save_search_curves(
    histories: dict[str, list[tuple[int, float]]],
    path: str | Path,
    metric: str,
    rungs: list[int],
    labels: dict[str, str] | None = None,
) -> Path:
    """Write a PNG of the metric over training steps for every trial of a search.

    Each trial is a line through its evaluations, its last one marked by a square; ASHA's rungs
    are dashed vertical lines, so a trial that ASHA stopped is a line ending on a rung.

    Args:
        histories: trial id -> [(step, value)] of the metric (non-finite values are left out).
        path: output PNG.
        metric: the metric's name (the y axis).
        rungs: the steps of ASHA's rungs ([] for none).
        labels: trial id -> legend label (default: the trial id); the legend names the best
            MAX_LEGEND trials.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = search_curves_figure(histories, metric, rungs, labels)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
