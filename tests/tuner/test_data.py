"""Tests for tuner/data/presets.py: exact Gaussian-mixture quantities against closed forms, presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from tuner.data.presets import (
    DATASETS,
    IMAGE_EXTENSIONS,
    DataError,
    Dataset,
    GaussianMixture,
    load_dataset,
    load_digits_split,
)

LOGSNRS = [None, -4.0, 0.0, 3.0, "per_example"]


def _mixture() -> GaussianMixture:
    # three full-covariance components with unequal weights, D=2
    return GaussianMixture(
        [0.2, 0.5, 0.3],
        [[-1.0, 0.5], [1.0, -0.5], [0.0, 1.5]],
        [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]], [[0.1, 0.0], [0.0, 0.6]]],
    )


def _levels(kind: float | str | None, n: int) -> float | torch.Tensor | None:
    if kind == "per_example":
        return torch.linspace(-12.0, 12.0, n)  # one level per example, both extremes
    return kind


def _alpha_sigma(logsnr: float | torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    lam = torch.as_tensor(logsnr, dtype=torch.float64).expand(n)[:, None]
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def _points(n: int = 64) -> torch.Tensor:
    return 1.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(1))


# --- GaussianMixture ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOGSNRS)
def test_score_is_gradient_of_log_prob(kind: float | str | None) -> None:
    gm, x = _mixture(), _points().requires_grad_(True)
    logsnr = _levels(kind, x.shape[0])
    (grad,) = torch.autograd.grad(gm.log_prob(x, logsnr).sum(), x)
    score = gm.score(x.detach(), logsnr)
    assert torch.allclose(score, grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", LOGSNRS[1:])
def test_eps_star_and_tweedie(kind: float | str) -> None:
    gm, x = _mixture(), _points()
    logsnr = _levels(kind, x.shape[0])
    alpha, sigma = _alpha_sigma(logsnr, x.shape[0])
    score = gm.score(x, logsnr).double()
    mean = gm.posterior_mean(x, logsnr).double()
    eps = gm.eps_star(x, logsnr).double()
    # ε* = −σ·score and ε* = (x − α E[x0|x])/σ
    assert torch.allclose(eps, -sigma * score, atol=1e-5)
    assert torch.allclose(eps, (x - alpha * mean) / sigma, atol=2e-3)
    # Tweedie: E[x0|x] = (x + σ² score)/α
    assert torch.allclose(mean, (x + sigma**2 * score) / alpha, atol=1e-4, rtol=1e-4)


def test_per_example_levels_match_scalar_calls() -> None:
    gm, x = _mixture(), _points(8)
    lam = torch.linspace(-5.0, 5.0, 8)
    batched = gm.posterior_mean(x, lam), gm.responsibilities(x, lam), gm.log_prob(x, lam)
    for i in range(8):
        xi, li = x[i : i + 1], float(lam[i])
        assert torch.allclose(batched[0][i], gm.posterior_mean(xi, li)[0], atol=1e-6)
        assert torch.allclose(batched[1][i], gm.responsibilities(xi, li)[0], atol=1e-6)
        assert torch.allclose(batched[2][i], gm.log_prob(xi, torch.tensor(li))[0], atol=1e-5)


@pytest.mark.parametrize("logsnr", [None, -1.0, 2.0])
def test_log_prob_integrates_to_one(logsnr: float | None) -> None:
    gm = _mixture()
    h = 0.025
    t = torch.arange(-6.0, 6.0, h) + h / 2
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)
    total = gm.log_prob(grid, logsnr).double().exp().sum() * h**2
    assert abs(total.item() - 1.0) < 1e-3


@pytest.mark.parametrize("logsnr", [-3.0, 0.0, 4.0, 15.0])
def test_single_gaussian_closed_forms(logsnr: float) -> None:
    v = torch.tensor([2.0, 0.5])
    gm = GaussianMixture([1.0], [[0.0, 0.0]], [torch.diag(v).tolist()])
    x = _points(16)
    a2, s2 = torch.sigmoid(torch.tensor(logsnr)), torch.sigmoid(torch.tensor(-logsnr))
    var = a2 * v + s2  # x_λ ~ N(0, α² v + σ²)
    # posterior mean of N(0, v): α v / (α² v + σ²) · x
    assert torch.allclose(gm.posterior_mean(x, logsnr), a2.sqrt() * v / var * x, atol=1e-5)
    assert torch.allclose(gm.score(x, logsnr), -x / var, rtol=1e-4, atol=1e-4)
    logp = -0.5 * (x**2 / var + var.log() + math.log(2 * math.pi)).sum(1)
    assert torch.allclose(gm.log_prob(x, logsnr), logp, atol=1e-4)
    assert torch.allclose(gm.responsibilities(x, logsnr), torch.ones(16, 1))
    eps = gm.eps_star(x, logsnr)
    assert torch.allclose(eps, s2.sqrt() * x / var, rtol=1e-4, atol=1e-5)


def test_noised_matches_noisy_density_and_samples() -> None:
    gm, x = _mixture(), _points()
    noisy = gm.noised(0.7)
    assert torch.allclose(noisy.log_prob(x), gm.log_prob(x, 0.7), atol=1e-6)
    # sampling x_λ = α x0 + σ ε directly agrees with the noised mixture's moments
    g = torch.Generator().manual_seed(3)
    x0 = gm.sample(100_000, g)
    a, s = (
        math.sqrt(torch.sigmoid(torch.tensor(0.7)).item()),
        math.sqrt(torch.sigmoid(torch.tensor(-0.7)).item()),
    )
    xl = a * x0 + s * torch.randn(x0.shape, generator=g)
    assert torch.allclose(xl.mean(0), noisy.mean, atol=0.02)
    assert torch.allclose(torch.cov(xl.T), noisy.covariance, atol=0.02)


def test_sample_moments_and_mode_fractions() -> None:
    gm = _mixture()
    x = gm.sample(100_000, torch.Generator().manual_seed(0))
    assert x.shape == (100_000, 2) and x.dtype == torch.float32
    assert torch.allclose(x.mean(0), gm.mean, atol=0.02)
    assert torch.allclose(torch.cov(x.T), gm.covariance, atol=0.02)
    # separated modes: argmax assignment recovers the weights
    sep = GaussianMixture([0.7, 0.3], [[-3.0, 0.0], [3.0, 0.0]], [torch.eye(2).tolist()] * 2)
    fr = sep.mode_fractions(sep.sample(50_000, torch.Generator().manual_seed(0)))
    assert torch.allclose(fr, torch.tensor([0.7, 0.3]), atol=0.01)
    assert gm.sample(10, torch.Generator().manual_seed(5)).equal(
        gm.sample(10, torch.Generator().manual_seed(5))
    )


def test_posterior_mean_limits_and_orthogonality() -> None:
    gm, x = _mixture(), _points()
    assert torch.allclose(gm.posterior_mean(x, None), x, atol=1e-5)  # clean: E[x0|x0] = x0
    pm = gm.posterior_mean(x, -20.0)  # pure noise: the prior mean
    assert torch.allclose(pm, gm.mean.expand_as(pm), atol=1e-3)
    assert torch.allclose(gm.responsibilities(x).sum(1), torch.ones(x.shape[0]))
    # ε* = E[ε | x_λ] is a projection: E[ε·ε*] = E[|ε*|²] (Monte Carlo, per-example levels)
    g = torch.Generator().manual_seed(4)
    n = 50_000
    x0, eps = gm.sample(n, g), torch.randn(n, 2, generator=g)
    lam = torch.empty(n).uniform_(-6.0, 6.0, generator=g)
    alpha, sigma = (v.float() for v in _alpha_sigma(lam, n))
    e_star = gm.eps_star(alpha * x0 + sigma * eps, lam)
    lhs, rhs = (eps * e_star).sum(1).mean(), (e_star**2).sum(1).mean()
    assert abs(lhs - rhs) < 0.02
    with pytest.raises(ValueError, match="noise level"):
        gm.eps_star(x, None)


# --- low-dimensional presets -------------------------------------------------------------------

LOWDIM = ["ring8", "bimodal", "bimodal_biased", "gaussian_noisy", "mixture_noisy"]


@pytest.mark.parametrize("name", LOWDIM)
def test_lowdim_shapes_and_determinism(name: str) -> None:
    ds = load_dataset(name, seed=0)
    assert isinstance(ds, Dataset) and ds.name == name and ds.kind == "lowdim"
    assert ds.train.shape == (20000, 2) and ds.test.shape == (5000, 2) and ds.shape == (2,)
    assert ds.train.dtype == torch.float32 and isinstance(ds.truth, GaussianMixture)
    assert load_dataset(name, seed=0).train.equal(ds.train)
    other = load_dataset(name, seed=1)
    assert not other.train.equal(ds.train)
    assert torch.equal(other.truth.means, ds.truth.means)  # the truth is not seed-dependent
    # the clean test set follows the truth
    assert torch.allclose(torch.cov(ds.test.T), ds.truth.covariance, atol=0.06)


def test_ring8() -> None:
    ds = load_dataset("ring8")
    assert ds.truth.n_components == 8 and ds.minority is None and ds.noise_sigma == 0.0
    assert torch.allclose(ds.truth.covariance, 0.9944 * torch.eye(2), atol=1e-4)
    assert torch.allclose(ds.truth.means.norm(dim=1), torch.full((8,), 1.4))
    assert torch.allclose(ds.truth.mode_fractions(ds.train), torch.full((8,), 0.125), atol=0.01)


def test_bimodal_biased_fractions() -> None:
    ds = load_dataset("bimodal_biased")
    assert ds.minority == 1 and ds.reference.shape == (1000, 2)
    assert torch.allclose(ds.observed.weights, torch.tensor([0.9, 0.1]))
    assert torch.allclose(ds.truth.weights, torch.tensor([0.5, 0.5]))
    assert abs(ds.truth.mode_fractions(ds.train)[1] - 0.1) < 0.01
    assert abs(ds.truth.mode_fractions(ds.reference)[1] - 0.5) < 0.05
    assert abs(ds.truth.mode_fractions(ds.test)[1] - 0.5) < 0.02


@pytest.mark.parametrize("name", ["gaussian_noisy", "mixture_noisy"])
def test_noisy_presets_inflate_variance(name: str) -> None:
    ds = load_dataset(name)
    assert ds.noise_sigma == 0.5
    clean = torch.diagonal(ds.truth.covariance)
    assert torch.allclose(ds.train.var(0), clean + 0.25, rtol=0.04)  # Var y = Var x0 + s_n²
    assert torch.allclose(ds.test.var(0), clean, rtol=0.05)
    if name == "gaussian_noisy":
        assert torch.allclose(clean, torch.tensor([1.0, 0.25]))


# --- digits ------------------------------------------------------------------------------------


def test_digits_split_is_fixed() -> None:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert x_tr.shape == (1347, 1, 8, 8) and x_te.shape == (450, 1, 8, 8)
    assert y_tr.shape == (1347,) and y_te.dtype == torch.int64
    assert x_tr.min() == -1.0 and x_tr.max() == 1.0
    # values are 0..16 mapped by x/8 − 1
    assert torch.equal(((x_tr + 1) * 8).round(), (x_tr + 1) * 8)
    # stratified: each class's test count is a quarter of its total, to within one example
    total = torch.bincount(torch.cat([y_tr, y_te]), minlength=10).float()
    assert (torch.bincount(y_te, minlength=10) - 0.25 * total).abs().max() <= 1
    again = load_digits_split()
    assert all(a.equal(b) for a, b in zip((x_tr, y_tr, x_te, y_te), again, strict=True))
    ds = load_dataset("digits", seed=5)
    assert ds.kind == "image" and ds.shape == (1, 8, 8) and ds.noise_sigma == 0.0
    assert ds.train.equal(x_tr) and ds.test.equal(x_te) and ds.labels_test.equal(y_te)


def test_digits_split_cache_is_the_split_and_survives_damage(tmp_path: Path) -> None:
    fresh = load_digits_split(cache_dir=None)
    first = load_digits_split(cache_dir=tmp_path)  # made by scikit-learn, then written
    (cached,) = tmp_path.glob("split-sklearn*.pt")
    again = load_digits_split(cache_dir=tmp_path)  # read back
    cached.write_bytes(cached.read_bytes()[:100])  # damaged: made again and rewritten
    repaired = load_digits_split(cache_dir=tmp_path)
    for split in (first, again, repaired, load_digits_split(cache_dir=tmp_path)):
        assert all(a.equal(b) and a.dtype == b.dtype for a, b in zip(fresh, split, strict=True))
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary file left


def test_digits_biased_proportions() -> None:
    x_tr, y_tr, x_te, _ = load_digits_split()
    full = torch.bincount(y_tr, minlength=10)
    ds = load_dataset("digits_biased", seed=0)
    counts = torch.bincount(ds.labels_train, minlength=10)
    assert counts[:5].equal(full[:5])  # classes 0–4 all kept
    assert torch.allclose(counts[5:].float(), 0.2 * full[5:].float(), atol=0.51)  # 20 % of 5–9
    assert (
        ds.train.shape[0] == counts.sum() and ds.test.equal(x_te) and ds.minority == (5, 6, 7, 8, 9)
    )
    ref = torch.bincount(ds.labels_reference, minlength=10)
    assert ref.min() == ref.max()  # class-uniform
    assert abs(ds.reference.shape[0] - 0.1 * ds.train.shape[0]) <= 10
    # classes 5–9 of the reference come from train examples left out of the observed set
    minority = ds.reference[ds.labels_reference >= 5].flatten(1)
    assert torch.cdist(minority, ds.train.flatten(1)).min() > 0
    assert torch.cdist(ds.reference.flatten(1), x_tr.flatten(1)).min(1).values.max() == 0
    assert load_dataset("digits_biased", seed=0).train.equal(ds.train)
    assert not load_dataset("digits_biased", seed=1).train.equal(ds.train)


def test_digits_noisy() -> None:
    x_tr, _, x_te, _ = load_digits_split()
    ds = load_dataset("digits_noisy", seed=0)
    assert ds.noise_sigma == 0.2 and ds.test.equal(x_te)
    noise = ds.train - x_tr
    assert abs(noise.std().item() - 0.2) < 0.005 and abs(noise.mean().item()) < 0.005
    assert not load_dataset("digits_noisy", seed=1).train.equal(ds.train)


# --- folders and errors ------------------------------------------------------------------------


def _write_images(folder: Path) -> int:
    (folder / "sub").mkdir(parents=True)
    # 30x20 image: blue | red | green columns; a center crop keeps only the red 20x20 middle
    im = Image.new("RGB", (30, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 5, 20))
    im.paste((0, 255, 0), (25, 0, 30, 20))
    n = 0
    for i in range(8):
        im.save(folder / f"a{i}.png")
        n += 1
    im.save(folder / "sub" / "b.PNG")
    im.convert("L").convert("RGB").save(folder / "sub" / "c.bmp")  # grey, still 3 channels
    Image.new("L", (12, 12), 0).save(folder / "d.JPEG")
    (folder / "notes.txt").write_text("not an image")
    return n + 3


def test_folder_loading(tmp_path: Path) -> None:
    n = _write_images(tmp_path / "imgs")
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}", seed=0, size=16)
    assert ds.kind == "image" and ds.shape == (3, 16, 16)
    assert ds.train.shape[0] + ds.test.shape[0] == n and ds.test.shape[0] == 1
    assert ds.train.shape[1:] == (3, 16, 16) and ds.train.min() >= -1 and ds.train.max() <= 1
    both = torch.cat([ds.train, ds.test])
    red = torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 16, 16)
    assert sum(bool(torch.allclose(x, red, atol=1e-6)) for x in both) == 9  # center-cropped
    assert load_dataset(f"folder:{tmp_path / 'imgs'}", seed=0, size=16).test.equal(ds.test)
    default = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert default.shape == (3, 32, 32)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(f"folder:{tmp_path / 'missing'}")
    assert _one_line(err).startswith(f"data folder {tmp_path / 'missing'} does not exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(f"folder:{tmp_path / 'empty'}")
    msg = _one_line(err)
    assert str(tmp_path / "empty") in msg and all(ext in msg for ext in IMAGE_EXTENSIONS)
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    msg = _one_line(err)
    assert "'mnist'" in msg and all(p in msg for p in DATASETS)
    for name in ("cifar10", "cifar10_biased"):
        with pytest.raises(DataError) as err:
            load_dataset(name, root=str(tmp_path), download=False)
        msg = _one_line(err)
        assert str(tmp_path) in msg and "data.root" in msg and "data.download" in msg
    assert issubclass(DataError, ValueError)
