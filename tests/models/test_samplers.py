import math
from collections.abc import Callable

import pytest
import torch

from models.analytic import GaussianMixture
from models.picard import sample_picard
from models.samplers import SAMPLERS, sample_ddim, sample_ddpm, sample_heun
from models.schedules import logsnr_grid

# (sampler, steps on the cosine grid) used for the mixture tests; ddpm is first order and
# stochastic, so it gets more steps
RUNS = [("ddim", 100), ("heun", 50), ("ddpm", 200)]


class IsoMixtureEps:
    """Exact ε*(x, λ) = E[ε | x_λ = x] of a mixture of isotropic Gaussians N(μ_k, s_k² I).

    Component k of x_λ is N(α μ_k, (α² s_k² + σ²) I), so ε* = σ Σ_k r_k (x − α μ_k)/c_k with
    c_k = α² s_k² + σ². A fast special case of ``tuner.data.presets.GaussianMixture.eps_star``, which it
    is checked against below.
    """

    def __init__(self, weights: list[float], means: torch.Tensor, stds: list[float]) -> None:
        w = torch.tensor(weights, dtype=torch.float64)
        self.logw = (w / w.sum()).log()
        self.mu = means.double()
        self.var = torch.tensor(stds, dtype=torch.float64) ** 2
        dim = self.mu.shape[1]
        covs = self.var[:, None, None] * torch.eye(dim, dtype=torch.float64)
        self.mixture = GaussianMixture(w, self.mu, covs)
        self.calls = 0

    def __call__(self, x: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert logsnr.shape == (x.shape[0],)
        lam = logsnr.double()[:, None, None]
        a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
        c = a2 * self.var[None, :, None] + s2  # (N, K, 1)
        d = x.double()[:, None, :] - a2.sqrt() * self.mu[None]
        logp = self.logw[None] - 0.5 * (d**2 / c).sum(-1) - 0.5 * x.shape[1] * c[..., 0].log()
        r = torch.softmax(logp, dim=1)[..., None]
        return (s2[:, 0].sqrt() * (r * d / c).sum(1)).to(x.dtype)


def _ring() -> IsoMixtureEps:
    ang = torch.arange(8) * 2 * math.pi / 8
    return IsoMixtureEps([1.0] * 8, 1.4 * torch.stack([ang.cos(), ang.sin()], 1), [0.12] * 8)


def _bimodal() -> IsoMixtureEps:
    return IsoMixtureEps([0.7, 0.3], torch.tensor([[-1.0], [1.5]]), [0.3, 0.2])


def test_registry() -> None:
    sequential = {"ddim": sample_ddim, "ddpm": sample_ddpm, "heun": sample_heun}
    assert sequential | {"picard": sample_picard} == dict(SAMPLERS.items())


def test_iso_eps_is_the_exact_mixture_eps() -> None:
    g = torch.Generator().manual_seed(0)
    for eps in (_ring(), _bimodal()):
        x = 2 * torch.randn(200, eps.mu.shape[1], generator=g)
        lam = torch.empty(200).uniform_(-12, 12, generator=g)
        torch.testing.assert_close(eps(x, lam), eps.mixture.eps_star(x, lam), atol=1e-5, rtol=1e-4)


def _run(name: str, steps: int, eps: IsoMixtureEps, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, eps.mu.shape[1], generator=g)
    return SAMPLERS[name](eps, x, logsnr_grid("cosine", steps, -15.0, 15.0), generator=g)


def _per_mode(gm: GaussianMixture, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    k = gm.responsibilities(out).argmax(1)
    frac = torch.bincount(k, minlength=gm.n_components).float() / out.shape[0]
    means = torch.stack([out[k == j].mean(0) for j in range(gm.n_components)])
    stds = torch.stack([out[k == j].std(0) for j in range(gm.n_components)])
    return frac, means, stds, out - gm.means[k]


@pytest.mark.parametrize(("name", "steps"), RUNS)
def test_ring8_modes_means_covariances(name: str, steps: int) -> None:
    eps = _ring()
    gm, n = eps.mixture, 4000
    out = _run(name, steps, eps, n, seed=1)
    assert eps.calls == (2 * steps + 1 if name == "heun" else steps + 1)
    frac, means, stds, resid = _per_mode(gm, out)
    # mode fractions 1/8: binomial s.e. 0.0052 at n = 4000, tolerance ~5 s.e.
    torch.testing.assert_close(frac, torch.full((8,), 0.125), atol=0.025, rtol=0)
    # component means: s.e. 0.12/sqrt(500) ≈ 0.0054 per coordinate
    torch.testing.assert_close(means, gm.means, atol=0.03, rtol=0)
    # within-mode covariance 0.12² I: first-order samplers shrink it by a few % at these steps
    cov = resid.T @ resid / n
    torch.testing.assert_close(cov.diagonal(), torch.full((2,), 0.0144), rtol=0.2, atol=0)
    assert abs(float(cov[0, 1])) < 0.1 * 0.0144
    assert float(stds.min()) > 0.12 * 0.8 and float(stds.max()) < 0.12 * 1.2
    # whole-mixture mean and covariance
    torch.testing.assert_close(out.mean(0), gm.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(out.T.cov(), gm.covariance, atol=0.05, rtol=0)


@pytest.mark.parametrize(("name", "steps"), RUNS)
def test_bimodal_weights_means_stds(name: str, steps: int) -> None:
    eps = _bimodal()
    gm = eps.mixture
    out = _run(name, steps, eps, 4000, seed=2)
    frac, means, stds, _ = _per_mode(gm, out)
    # weights 0.7/0.3: s.e. 0.0072 at n = 4000
    torch.testing.assert_close(frac, torch.tensor([0.7, 0.3]), atol=0.03, rtol=0)
    torch.testing.assert_close(means, gm.means, atol=0.04, rtol=0)
    torch.testing.assert_close(stds[:, 0], torch.tensor([0.3, 0.2]), rtol=0.1, atol=0)


V = torch.tensor([0.01, 0.25, 1.0, 4.0])


def _gaussian_eps(x: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    # x0 ~ N(0, diag V): x_λ ~ N(0, α²V + σ²), ε* = σ x/(α²V + σ²)
    a2 = torch.sigmoid(logsnr.double())[:, None]
    return ((1 - a2).sqrt() * x.double() / (a2 * V.double() + 1 - a2)).to(x.dtype)


def _ode_variance_error(sampler: Callable, grid: str, steps: int) -> torch.Tensor:
    # with a linear ε* an ODE sampler is a linear map x -> g·x, so Var[out] = g²: no Monte Carlo
    gain = sampler(_gaussian_eps, torch.ones(1, 4), logsnr_grid(grid, steps, -15.0, 15.0))[0]
    return gain.double() ** 2 / V.double() - 1


@pytest.mark.parametrize("grid", ["linear", "karras", "cosine"])
def test_ddim_gaussian_variance_first_order(grid: str) -> None:
    e100, e200 = (_ode_variance_error(sample_ddim, grid, s) for s in (100, 200))
    assert e200.abs().max() < 0.07  # variance v to within a few % at 200 steps
    ratio = e200 / e100  # Euler on the PF-ODE: error halves when the steps double
    assert ((ratio > 0.4) & (ratio < 0.6)).all(), ratio


@pytest.mark.parametrize("grid", ["linear", "karras", "cosine"])
def test_heun_gaussian_variance_second_order(grid: str) -> None:
    e100, e200 = (_ode_variance_error(sample_heun, grid, s) for s in (100, 200))
    assert e200.abs().max() < 0.005
    ratio = e200 / e100  # second order: error falls ~4x when the steps double
    assert ((ratio.abs() > 0.1) & (ratio.abs() < 0.35)).all(), ratio


def test_ddpm_gaussian_variance() -> None:
    g = torch.Generator().manual_seed(0)
    n = 20000
    errs = []
    for steps in (100, 400):
        x = torch.randn(n, 4, generator=g)
        out = sample_ddpm(_gaussian_eps, x, logsnr_grid("cosine", steps), generator=g)
        errs.append(out.double().var(0) / V - 1)
        se = (V / n).sqrt()
        assert (out.mean(0).abs() < 4 * se).all()
    # relative s.e. of a variance estimate: sqrt(2/n) = 1 %
    assert errs[1].abs().max() < 0.1
    assert errs[1].abs().max() < 0.6 * errs[0].abs().max()  # first order in the step size


def test_samplers_are_reproducible_and_check_inputs() -> None:
    eps = _bimodal()
    grid = logsnr_grid("cosine", 10)
    x = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    for name in (
        "ddim",
        "ddpm",
        "heun",
    ):  # Picard has its own options (tests/models/test_picard.py)
        fn = SAMPLERS[name]
        a = fn(eps, x, grid, generator=torch.Generator().manual_seed(5))
        b = fn(eps, x, grid, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b), name
        assert a.shape == x.shape and a.dtype == x.dtype
        clipped = fn(eps, x, grid, generator=torch.Generator().manual_seed(5), clip_x0=0.5)
        assert clipped.abs().max() <= 0.5
        with pytest.raises(TypeError, match="unknown option"):
            fn(eps, x, grid, eta=1.0)
        with pytest.raises(ValueError, match="increasing"):
            fn(eps, x, grid.flip(0))
    c = sample_ddpm(eps, x, grid, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(c, sample_ddpm(eps, x, grid, generator=torch.Generator().manual_seed(5)))


def test_one_step_by_hand_on_images() -> None:
    # one step λ0 -> λ1 on image-shaped x with a linear ε*, written out from the formulas
    v = 0.5

    def model(x: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        a2 = torch.sigmoid(logsnr.double())[:, None, None, None]
        return ((1 - a2).sqrt() * x.double() / (a2 * v + 1 - a2)).float()

    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    lam0, lam1 = -3.0, 1.0
    grid = torch.tensor([lam0, lam1])
    a0, s0 = (
        math.sqrt(torch.sigmoid(torch.tensor(lam0))),
        math.sqrt(torch.sigmoid(torch.tensor(-lam0))),
    )
    a1, s1 = (
        math.sqrt(torch.sigmoid(torch.tensor(lam1))),
        math.sqrt(torch.sigmoid(torch.tensor(-lam1))),
    )
    lv0, lv1 = torch.full((3,), lam0), torch.full((3,), lam1)

    def x0_at(x: torch.Tensor, lv: torch.Tensor, a: float, s: float) -> torch.Tensor:
        return (x - s * model(x, lv)) / a

    # DDIM: x1 = α1 x̂0 + σ1 ε̂, return x̂0 at λ1
    eps0 = model(x, lv0)
    x1 = a1 * x0_at(x, lv0, a0, s0) + s1 * eps0
    torch.testing.assert_close(sample_ddim(model, x, grid), x0_at(x1, lv1, a1, s1))
    # DDPM: VDM posterior with r = e^{λ0 − λ1}
    r = math.exp(lam0 - lam1)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    x1 = a1 * (1 - r) * x0_at(x, lv0, a0, s0) + (a1 / a0) * r * x + math.sqrt(s1**2 * (1 - r)) * z
    got = sample_ddpm(model, x, grid, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, x0_at(x1, lv1, a1, s1))
    # Heun in y = x/α, s = e^{−λ/2}: dy/ds = ε̂(α y, λ)
    t0, t1 = math.exp(-lam0 / 2), math.exp(-lam1 / 2)
    y0 = x / a0
    d0 = model(a0 * y0, lv0)
    y_e = y0 + (t1 - t0) * d0
    y1 = y0 + (t1 - t0) * 0.5 * (d0 + model(a1 * y_e, lv1))
    torch.testing.assert_close(sample_heun(model, x, grid), x0_at(a1 * y1, lv1, a1, s1))
