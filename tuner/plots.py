"""PNG pictures for each trial, ready to be logged as artifacts: sample grids and the effective
weighting w(λ)·q(λ) (Kingma & Gao 2023). Matplotlib's Agg backend, no display needed."""

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from models.schedules import NoiseDensity  # noqa: E402
from models.weighting import Weighting, effective_weighting  # noqa: E402
from tuner.data import GaussianMixture  # noqa: E402

GRID_IMAGES = 64  # images shown in a sample grid
MIN_CELL_PX = 32  # small images are enlarged (nearest neighbour) to at least this size
MAX_POINTS = 5000  # points drawn in a scatter


def _image_grid(samples: Tensor, path: Path) -> None:
    x = samples[:GRID_IMAGES].detach().float().cpu().clamp(-1, 1).add(1).div(2)
    scale = max(1, -(-MIN_CELL_PX // x.shape[-1]))
    if scale > 1:
        x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    nrow = max(1, math.ceil(len(x) ** 0.5))
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=1.0)  # (3, H, W), grey repeated
    plt.imsave(path, grid.permute(1, 2, 0).numpy())


def _scatter(samples: Tensor, path: Path, truth: Tensor | GaussianMixture | None) -> None:
    x = samples[:MAX_POINTS].detach().float().cpu()
    if isinstance(truth, GaussianMixture):
        ref = truth.sample(MAX_POINTS, torch.Generator().manual_seed(0))
    else:
        ref = None if truth is None else truth[:MAX_POINTS].detach().float().cpu()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if x.shape[1] == 1:
        if ref is not None:
            ax.hist(ref[:, 0].numpy(), bins=60, density=True, color="0.7", label="truth")
        finite = x[torch.isfinite(x[:, 0]), 0]
        ax.hist(finite.numpy(), bins=60, density=True, histtype="step", color="C0", label="samples")
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
        inside = ((finite >= lo) & (finite <= hi)).all(1).sum()
        outside = len(x) - int(inside)
        title = f"{len(x)} samples" + (f", {outside} outside the view" if outside else "")
        ax.set_title(title + ("" if x.shape[1] == 2 else f" (dims 0, 1 of {x.shape[1]})"))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_sample_grid(
    samples: Tensor,
    path: str | Path,
    kind: str,
    truth: Tensor | GaussianMixture | None = None,
) -> Path:
    """Write a PNG of samples.

    Args:
        samples: images (N, C, H, W) in [-1, 1] (the first 64 are shown) or points (N, D).
        path: output PNG.
        kind: "image" or "lowdim" (Dataset.kind).
        truth: low-dim only: reference points (M, D) drawn in grey, or the true mixture
            (density contours in 2-D).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        if samples.dim() != 4:
            raise ValueError(f"image samples must be (N, C, H, W); got {tuple(samples.shape)}")
        _image_grid(samples, path)
    elif kind == "lowdim":
        if samples.dim() != 2:
            raise ValueError(f"low-dim samples must be (N, D); got {tuple(samples.shape)}")
        _scatter(samples, path, truth)
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


def save_weighting_plot(
    weighting: Weighting, density: NoiseDensity, path: str | Path, points: int = 601
) -> Path:
    """Write a PNG of the effective weighting w(λ)·q(λ) over the density's support.

    Left: w(λ)·q(λ) normalised to unit area, beside q(λ); right: w(λ) on a log scale.

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
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    left.plot(lam, c["effective"], label="w(λ)·q(λ), unit area")
    left.plot(lam, c["density"], "--", color="0.5", label="q(λ)")
    left.set_xlabel("log-SNR λ")
    left.set_title("effective weighting")
    left.legend(fontsize=8)
    right.semilogy(lam, c["weight"].clamp_min(1e-30), color="C1")
    right.set_xlabel("log-SNR λ")
    right.set_title("w(λ)")
    fig.suptitle(textwrap.fill(f"w = {weighting!r};  q = {density!r}", 150), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path)
    plt.close(fig)
    return path
