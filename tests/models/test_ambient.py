"""Ambient Tweedie + consistency (models/ambient.py) against closed forms on Gaussian data.

x0 ~ N(0, diag(v)), y = x0 + s_n·η. At a VE level s > s_n the Tweedie objective's minimiser is
E[x0 | x_VE] = v/(v + s²)·x_VE (METHODS.md §2).
"""

import math
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from models.ambient import AmbientLoss, ConsistencyLoss, ambient_logsnr_stop
from models.nets import MLP
from models.param import EpsModel, x0_to_eps
from models.samplers import sample_ddim
from models.schedules import CosineDensity, EDMDensity, alpha_sigma, logsnr_grid
from models.weighting import Constant
from tuner.data import GaussianMixture

V = torch.tensor([1.0, 0.25])  # the gaussian_noisy preset
SN = 0.5


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearX0(nn.Module):
    """ε-model whose x0-prediction is h = c·x_VE = c·x/α (per dimension)."""

    def __init__(self, c: Tensor) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        alpha = alpha_sigma(logsnr)[0][:, None]
        return x0_to_eps(x, self.c * x / alpha, logsnr)


def _noisy(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = V.sqrt() * torch.randn(n, 2, generator=g) + SN * torch.randn(n, 2, generator=g)
    return y, torch.randn(n, 2, generator=g)


def test_logsnr_stop() -> None:
    assert ambient_logsnr_stop(0.5) == pytest.approx(-2 * math.log(0.5))
    assert ambient_logsnr_stop(1.0) == 0.0
    with pytest.raises(ValueError):
        ambient_logsnr_stop(0.0)


@pytest.mark.parametrize("s", [0.55, 0.8, 1.5, 4.0])
def test_tweedie_minimiser_is_clean_posterior_mean(s: float) -> None:
    # J(c) is quadratic in the coefficient c of h = c·x_VE; its minimiser, fitted from three
    # evaluations on 200k fixed draws, is v/(v + s²) (not the noisy v_y/(v_y + s² − s_n²))
    n = 200_000
    y, eps = _noisy(n, seed=int(100 * s))
    lam = torch.full((n,), -2 * math.log(s))
    loss = AmbientLoss(SN, Constant(), CosineDensity())
    for objective in (loss.tweedie_objective, loss.core):
        for d in range(2):  # one dimension at a time: the loss is a sum over dimensions
            vals = []
            for c in (0.0, 0.5, 1.0):
                coef = torch.tensor([0.5, 0.5])
                coef[d] = c
                vals.append(float(objective(LinearX0(coef), y, eps, lam).double().mean()))
            j0, jh, j1 = vals  # J(c) = a c² + b c + k through c = 0, ½, 1
            a = 2 * (j1 - 2 * jh + j0)
            b = j1 - j0 - a
            c_star = -b / (2 * a)
            want = float(V[d] / (V[d] + s**2))
            assert c_star == pytest.approx(want, abs=0.01), (objective.__name__, d)


@pytest.mark.parametrize("logsnr", [-6.0, 0.0, 1.0, 1.3])
def test_core_is_scaled_tweedie_objective(logsnr: float) -> None:
    # core = w·taper·J/((1 − ρ)² s²), per example, for any model (the ε-form of Daras Eq. 5)
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=1))
    nn.init.normal_(model.backbone.out.weight, std=0.3)
    y, eps = _noisy(64, seed=1)
    lam = torch.full((64,), logsnr)
    loss = AmbientLoss(SN, Constant(), CosineDensity(), margin=0.1)
    rho = SN**2 * math.exp(logsnr)
    taper = min(1.0, (1 - rho) / 0.1)
    with torch.no_grad():
        got = loss.core(model, y, eps, lam)
        want = (
            taper
            * loss.tweedie_objective(model, y, eps, lam)
            / ((1 - rho) ** 2 * math.exp(-logsnr))
        )
    torch.testing.assert_close(got, want, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("density", [CosineDensity(), EDMDensity()])
def test_levels_are_drawn_above_the_data_noise(density: object) -> None:
    loss = AmbientLoss(SN, Constant(), density)
    y = torch.zeros(20000, 2)
    _, lam = loss.draw(y, torch.Generator().manual_seed(0))
    lam_n = ambient_logsnr_stop(SN)
    assert bool((lam <= lam_n).all()) and bool((lam >= density.logsnr_min).all())
    # the restriction of q: CDF(λ)/CDF(λ_n) at a few quantiles
    for q in (-4.0, -1.0, 0.5, 1.2):
        want = float(density.cdf(torch.tensor(q)) / density.cdf(torch.tensor(lam_n)))
        assert float((lam <= q).float().mean()) == pytest.approx(want, abs=0.01)


def test_no_level_above_data_noise_is_an_error() -> None:
    with pytest.raises(ValueError, match="no level above"):
        AmbientLoss(SN, Constant(), CosineDensity(logsnr_min=2.0, logsnr_max=15.0))


def _posterior_mean_model(noise: float, above: float | None = None) -> nn.Module:
    """Exact ε-prediction of N(0, diag(V + noise²)) (noise = 0: the clean data); with ``above``,
    that of N(0, diag(V + above²)) at levels below the data noise (λ > λ_n)."""

    def gm(extra: float) -> GaussianMixture:
        return GaussianMixture([1.0], [[0.0, 0.0]], [torch.diag(V + extra**2).tolist()])

    inner, outer = gm(noise), gm(noise if above is None else above)
    lam_n = ambient_logsnr_stop(SN)

    class Exact(nn.Module):
        def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
            below = (logsnr > lam_n + 1e-4)[:, None]
            return torch.where(below, outer.eps_star(x, logsnr), inner.eps_star(x, logsnr))

    return Exact()


@pytest.mark.parametrize("chain_steps", [1, 3])
def test_consistency_vanishes_for_the_clean_posterior_mean(chain_steps: int) -> None:
    # the exact clean denoiser is consistent: E[(h''₁ − h)(h''₂ − h)] = ‖E[h''|x] − h‖² = 0,
    # while a model that is the clean denoiser at λ_n but the noisy data's denoiser (variance
    # v + s_n², what naive training learns) below s_n is not (positive expectation)
    y, _ = _noisy(40000, seed=5)
    cons = ConsistencyLoss(SN, chain_steps=chain_steps, gap=2.0)
    exact = cons(_posterior_mean_model(0.0), y, torch.Generator().manual_seed(0))
    mixed = cons(_posterior_mean_model(0.0, SN), y, torch.Generator().manual_seed(0))
    se = exact.std().item() / math.sqrt(len(exact))
    assert abs(exact.mean().item()) < 4 * se
    assert mixed.mean().item() > 10 * mixed.std().item() / math.sqrt(len(mixed))


def test_consistency_estimator_is_unbiased_for_a_linear_model() -> None:
    # h(x, λ) = c(λ)·x/α with c = 0.6 at λ_n and 0.9 below: one DDPM step from x at λ_n to λ''
    # has mean α''(1 − r)h + (α''/α_n) r x (VDM Eq. 33), so ‖E[h''|x] − h‖² is exact
    lam_n = ambient_logsnr_stop(SN)

    class TwoLevel(nn.Module):
        def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
            c = torch.where(logsnr > lam_n + 1e-4, 0.9, 0.6)[:, None]
            return x0_to_eps(x, c * x / alpha_sigma(logsnr)[0][:, None], logsnr)

    y = torch.tensor([[1.0, -0.5]]).repeat(40000, 1)
    cons = ConsistencyLoss(SN, chain_steps=1, gap=1.0)
    est = cons(TwoLevel(), y, torch.Generator().manual_seed(0))
    lam = cons.levels(40000, torch.Generator().manual_seed(0), y.device)  # the same draws
    a_n, a_e = alpha_sigma(lam[0])[0], alpha_sigma(lam[1])[0]
    r = torch.exp(lam[0] - lam[1])
    x = a_n[:, None] * y
    h = 0.6 * y  # x/α_n = y
    mean_x = (a_e * (1 - r))[:, None] * h + (a_e / a_n * r)[:, None] * x
    want = ((0.9 * mean_x / a_e[:, None] - h).square().mean(1)).mean()
    se = est.std().item() / math.sqrt(len(est))
    assert est.mean().item() == pytest.approx(want.item(), abs=4 * se)


def test_consistency_trains_only_the_levels_below_the_anchor() -> None:
    # h = c_n·x/α at λ_n (the anchor, the Tweedie term's to learn) and c_b·x/α below: the
    # consistency gradient reaches c_b but leaves c_n alone
    lam_n = ambient_logsnr_stop(SN)

    class TwoLevel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_n = nn.Parameter(torch.tensor(0.6))
            self.c_b = nn.Parameter(torch.tensor(0.9))

        def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
            c = torch.where(logsnr > lam_n + 1e-4, self.c_b, self.c_n)[:, None]
            return x0_to_eps(x, c * x / alpha_sigma(logsnr)[0][:, None], logsnr)

    model = TwoLevel()
    y, _ = _noisy(256, seed=3)
    ConsistencyLoss(SN, chain_steps=2)(model, y, torch.Generator().manual_seed(0)).mean().backward()
    assert model.c_n.grad is None or model.c_n.grad == 0
    assert model.c_b.grad is not None and model.c_b.grad.abs() > 0


def test_consistency_gradients_reach_the_model() -> None:
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=1))
    nn.init.normal_(model.backbone.out.weight, std=0.3)
    y, _ = _noisy(32, seed=2)
    loss = ConsistencyLoss(SN, chain_steps=2)(model, y, torch.Generator().manual_seed(0))
    assert loss.shape == (32,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert model.backbone.out.weight.grad.abs().sum() > 0


def test_stopping_at_the_data_noise_returns_the_shrunk_posterior_mean() -> None:
    # sampling with the exact clean denoiser down to λ_n returns E[x0 | x_{s_n}] = v/(v+s_n²)·x_VE,
    # whose variance is v²/(v + s_n²): Tweedie without consistency shows this shrinkage
    model = _posterior_mean_model(0.0)
    grid = logsnr_grid("cosine", 60, -15.0, ambient_logsnr_stop(SN))
    x = torch.randn(8000, 2, generator=torch.Generator().manual_seed(0))
    samples = sample_ddim(model, x, grid)
    want = V**2 / (V + SN**2)
    torch.testing.assert_close(samples.var(0), want, rtol=0.05, atol=0.0)
