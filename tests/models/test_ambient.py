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
from models.analytic import GaussianMixture
from models.nets import MLP
from models.param import EpsModel, x0_to_eps
from models.samplers import sample_ddim
from models.schedules import CosineDensity, EDMDensity, alpha_sigma, logsnr_grid
from models.weighting import Constant

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


@pytest.mark.parametrize(("chain_steps", "gap"), [(1, 0.0), (3, 0.0), (1, 1.0), (2, 0.5)])
def test_consistency_vanishes_for_the_clean_posterior_mean(chain_steps: int, gap: float) -> None:
    # the exact clean denoiser is consistent: E[(h''₁ − h)(h''₂ − h)] = ‖E[h''|x] − h‖² = 0,
    # while a model that is the clean denoiser at λ_n but the noisy data's denoiser (variance
    # v + s_n², what naive training learns) below s_n is not (positive expectation)
    # (x0 units, where this mixed model's discrepancy stands far above the estimator's noise;
    # the ε-units estimate is the same per example times SNR(λ''), see the units test)
    y, _ = _noisy(40000, seed=5)
    cons = ConsistencyLoss(SN, chain_steps=chain_steps, gap=gap, units="x0")
    exact = cons(_posterior_mean_model(0.0), y, torch.Generator().manual_seed(0))
    mixed = cons(_posterior_mean_model(0.0, SN), y, torch.Generator().manual_seed(0))
    se = exact.std().item() / math.sqrt(len(exact))
    assert abs(exact.mean().item()) < 4 * se
    assert mixed.mean().item() > 10 * mixed.std().item() / math.sqrt(len(mixed))
    exact_eps = ConsistencyLoss(SN, chain_steps, gap)(
        _posterior_mean_model(0.0), y, torch.Generator().manual_seed(0)
    )
    assert abs(exact_eps.mean().item()) < 4 * exact_eps.std().item() / math.sqrt(len(y))


class TwoLevel(nn.Module):
    """h(x, λ) = c(λ)·x/α with c = c_n at λ_n and c_b at every level below the data noise."""

    def __init__(self, c_n: float = 0.6, c_b: float = 0.9, learn: bool = False) -> None:
        super().__init__()
        self.c_n = nn.Parameter(torch.tensor(c_n), requires_grad=learn)
        self.c_b = nn.Parameter(torch.tensor(c_b), requires_grad=learn)
        self.lam_n = ambient_logsnr_stop(SN)

    def coef(self, logsnr: Tensor) -> Tensor:
        return torch.where(logsnr > self.lam_n + 1e-4, self.c_b, self.c_n)

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        h = self.coef(logsnr)[:, None] * x / alpha_sigma(logsnr)[0][:, None]
        return x0_to_eps(x, h, logsnr)


def _step_mean(mean_x: Tensor, x0: Tensor, lam_t: Tensor, lam_s: Tensor) -> Tensor:
    """E of one DDPM step from λ_t to λ_s: α_s(1 − r)x̂0 + (α_s/α_t) r x (VDM Eq. 33)."""
    a_t, a_s = alpha_sigma(lam_t)[0][:, None], alpha_sigma(lam_s)[0][:, None]
    r = torch.exp(lam_t - lam_s)[:, None]
    return a_s * (1 - r) * x0 + a_s / a_t * r * mean_x


@pytest.mark.parametrize("units", ["eps", "x0"])
@pytest.mark.parametrize(("chain_steps", "gap"), [(1, 0.0), (2, 0.0), (1, 1.0), (2, 0.7)])
def test_consistency_estimator_is_unbiased_for_a_linear_model(
    chain_steps: int, gap: float, units: str
) -> None:
    # for a model linear in x every chain step's mean is linear in the previous mean, so
    # ‖E[h''|x] − h‖² follows from the drawn levels exactly (including the transport step from
    # λ_n to the chain's start that a gap needs)
    model = TwoLevel()
    n = 40000
    y = torch.tensor([[1.0, -0.5]]).repeat(n, 1)
    cons = ConsistencyLoss(SN, chain_steps=chain_steps, gap=gap, units=units)
    est = cons(model, y, torch.Generator().manual_seed(0))
    lam = cons.levels(n, torch.Generator().manual_seed(0), y.device)  # the same draws
    x = alpha_sigma(lam[0])[0][:, None] * y
    h = 0.6 * y  # x/α_n = y
    mean, x0 = _step_mean(x, h, lam[0], lam[1]), h  # transport (identity without a gap)
    for j in range(2, chain_steps + 2):
        if j > 2 or gap > 0:  # the step's x0-prediction at its start, h = c·x/α
            x0 = model.coef(lam[j - 1])[:, None] * mean / alpha_sigma(lam[j - 1])[0][:, None]
        mean = _step_mean(mean, x0, lam[j - 1], lam[j])
    h_end = model.coef(lam[-1])[:, None] * mean / alpha_sigma(lam[-1])[0][:, None]
    # in ε units each example's discrepancy is scaled by SNR(λ'') = e^λ''
    scale = lam[-1].exp() if units == "eps" else torch.ones(n)
    want = (scale * (h_end - h).square().mean(1)).mean()
    se = est.std().item() / math.sqrt(len(est))
    assert want.item() > 5 * se  # the case is not degenerate
    assert est.mean().item() == pytest.approx(want.item(), abs=4 * se)


@pytest.mark.parametrize("grid", ["cosine", "linear", "karras"])
@pytest.mark.parametrize(("chain_steps", "gap"), [(1, 0.0), (3, 0.0), (2, 0.5)])
def test_consistency_end_levels_cover_the_sampling_grid(
    grid: str, chain_steps: int, gap: float
) -> None:
    # the sampler (50 steps on [−15, 15], the config's defaults) visits every grid level; once
    # consistency is on it runs to logsnr_max, so every interval between two of its levels
    # above λ_n must hold chain ends, in proportion to the sampler's spacing: the grid's levels
    # are equally spaced in the grid's own time, so each full interval gets an equal share
    lam_n = ambient_logsnr_stop(SN)
    levels = logsnr_grid(grid, 50, -15.0, 15.0).double()
    above = levels[levels > lam_n]
    cons = ConsistencyLoss(SN, chain_steps, gap, logsnr_max=15.0, grid=grid)
    n = 200_000
    lam = cons.levels(n, torch.Generator().manual_seed(0), torch.device("cpu")).double()
    end = lam[-1]
    assert bool((end >= lam_n).all()) and bool((end <= 15.0).all())
    assert float(end.max()) > float(above[-2])  # the last interval, up to logsnr_max, is reached
    counts = torch.stack(
        [((end > a) & (end <= b)).sum() for a, b in zip(above[:-1], above[1:], strict=True)]
    )
    assert bool((counts > 0).all())
    share = counts.double() / n
    first = float(((end > lam_n) & (end <= above[0])).double().mean())  # the partial interval
    # full intervals: equal shares 1/m each, m = full intervals + the partial one's fraction
    m = len(counts) + first / float(share.mean())
    torch.testing.assert_close(share, torch.full_like(share, 1 / m), rtol=0.05, atol=0.0)
    # the chain's steps end at λ'' from a start at or above λ_n, increasing, each at most gap
    steps = lam[2:] - lam[1:-1]
    assert bool((lam[1] >= lam_n - 1e-6).all()) and bool((steps >= -1e-6).all())
    if gap > 0:
        assert float(steps.max()) <= gap + 1e-5
    else:
        assert bool((lam[1] == lam[0]).all())
        torch.testing.assert_close(steps, steps[:1].expand_as(steps), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gap", [0.0, 1.0])
def test_consistency_units_differ_by_the_end_levels_snr(gap: float) -> None:
    # the same draws in both units: per example, the ε-units estimate is SNR(λ'') times the
    # x0-units one (ε̂'' − ε̃'' = SNR''^½ (h − h''))
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=1))
    nn.init.normal_(model.backbone.out.weight, std=0.3)
    y, _ = _noisy(256, seed=4)
    got = {}
    for units in ("eps", "x0"):
        cons = ConsistencyLoss(SN, chain_steps=2, gap=gap, units=units)
        with torch.no_grad():
            got[units] = cons(model, y, torch.Generator().manual_seed(1))
    snr = cons.levels(256, torch.Generator().manual_seed(1), y.device)[-1].exp()
    assert float(got["x0"].abs().min()) > 0
    torch.testing.assert_close(got["eps"], snr * got["x0"], rtol=2e-3, atol=1e-6)


def test_consistency_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="chain_steps"):
        ConsistencyLoss(SN, chain_steps=0)
    with pytest.raises(ValueError, match="gap"):
        ConsistencyLoss(SN, gap=-1.0)
    with pytest.raises(ValueError, match="grid"):
        ConsistencyLoss(SN, grid="uniform")
    with pytest.raises(ValueError, match="units"):
        ConsistencyLoss(SN, units="v")
    with pytest.raises(ValueError, match="no level below"):
        ConsistencyLoss(SN, logsnr_max=1.0)


@pytest.mark.parametrize("gap", [0.0, 1.0])
def test_consistency_trains_only_the_levels_below_the_anchor(gap: float) -> None:
    # h = c_n·x/α at λ_n (the anchor, the Tweedie term's to learn) and c_b·x/α below: the
    # consistency gradient reaches c_b but leaves c_n alone (also through the transport step)
    model = TwoLevel(learn=True)
    y, _ = _noisy(256, seed=3)
    cons = ConsistencyLoss(SN, chain_steps=2, gap=gap)
    cons(model, y, torch.Generator().manual_seed(0)).mean().backward()
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
