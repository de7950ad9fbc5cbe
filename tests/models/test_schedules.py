import math

import pytest
import torch

from models.schedules import (
    DENSITIES,
    GRIDS,
    CosineDensity,
    EDMDensity,
    LinearBetaDensity,
    LogisticDensity,
    NoiseDensity,
    NormalDensity,
    alpha_sigma,
    bcast,
    logsnr_grid,
)

CASES = {
    "cosine": lambda: CosineDensity(),
    "cosine_narrow": lambda: CosineDensity(logsnr_min=-5.0, logsnr_max=8.0),
    "linear_beta": lambda: LinearBetaDensity(),
    "logistic": lambda: LogisticDensity(),
    "logistic_shifted": lambda: LogisticDensity(loc=10.5, scale=1.5, logsnr_min=6, logsnr_max=15),
    "edm": lambda: EDMDensity(),
    "normal": lambda: NormalDensity(loc=1.0, scale=2.5),
    "edm_narrow": lambda: EDMDensity(logsnr_min=-2.0, logsnr_max=4.0),
}


def _grid(d: NoiseDensity, n: int = 20001) -> torch.Tensor:
    return torch.linspace(d.logsnr_min, d.logsnr_max, n, dtype=torch.float64)


def test_registry_names() -> None:
    assert set(DENSITIES) == {"cosine", "linear_beta", "logistic", "normal", "edm"}
    assert GRIDS == ("cosine", "linear", "karras")
    for _, cls in DENSITIES.items():
        d = cls(logsnr_min=-12.0, logsnr_max=9.0)
        assert d.logsnr_max == 9.0


def test_alpha_sigma_and_bcast() -> None:
    lam = torch.linspace(-15, 15, 31)
    a, s = alpha_sigma(lam)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(lam))
    torch.testing.assert_close((a**2 / s**2).log(), lam, atol=1e-4, rtol=1e-5)
    assert bcast(lam, torch.zeros(31, 3, 4, 5)).shape == (31, 1, 1, 1)
    assert bcast(lam, torch.zeros(31, 2)).shape == (31, 1)


@pytest.mark.parametrize("case", list(CASES))
def test_log_prob_integrates_to_one(case: str) -> None:
    d = CASES[case]()
    lam = _grid(d)
    total = torch.trapezoid(d.log_prob(lam).exp(), lam)
    assert abs(float(total) - 1.0) < 1e-5


@pytest.mark.parametrize("case", list(CASES))
def test_samples_match_log_prob_ks(case: str) -> None:
    d = CASES[case]()
    n = 20000
    x = d.sample(n, torch.Generator().manual_seed(1)).double().sort().values
    assert x.min() >= d.logsnr_min and x.max() <= d.logsnr_max
    lam = _grid(d)
    pdf = d.log_prob(lam).exp()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(pdf, lam)])
    idx = torch.searchsorted(lam, x).clamp(1, lam.numel() - 1)
    frac = (x - lam[idx - 1]) / (lam[idx] - lam[idx - 1])
    model_cdf = cdf[idx - 1] + frac * (cdf[idx] - cdf[idx - 1])
    emp_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((emp_hi - model_cdf).abs(), (emp_hi - 1.0 / n - model_cdf).abs()).max()
    assert float(ks) < 1.95 / math.sqrt(n)  # KS critical value at level 0.001


@pytest.mark.parametrize("case", list(CASES))
def test_sample_is_deterministic_float32_and_in_range(case: str) -> None:
    d = CASES[case]()
    a = d.sample(1000, torch.Generator().manual_seed(3))
    b = d.sample(1000, torch.Generator().manual_seed(3))
    c = d.sample(1000, torch.Generator().manual_seed(4))
    assert a.dtype == torch.float32 and a.shape == (1000,)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= d.logsnr_min and a.max() <= d.logsnr_max


@pytest.mark.parametrize("case", list(CASES))
def test_cdf_icdf_roundtrip_and_outside_support(case: str) -> None:
    d = CASES[case]()
    u = torch.linspace(0.001, 0.999, 101, dtype=torch.float64)
    torch.testing.assert_close(d.cdf(d.icdf(u)), u, atol=1e-9, rtol=1e-7)
    out = torch.tensor([d.logsnr_min - 0.5, d.logsnr_max + 0.5])
    assert torch.isneginf(d.log_prob(out)).all()


def test_cosine_change_of_variables() -> None:
    # t ~ U(t_lo, t_hi) and λ = −2 log tan(πt/2): q(λ(t)) |dλ/dt| = 1/(t_hi − t_lo)
    d = CosineDensity(logsnr_min=-15.0, logsnr_max=15.0)
    t_of = lambda lam: (2 / math.pi) * math.atan(math.exp(-lam / 2))  # noqa: E731
    t_lo, t_hi = t_of(15.0), t_of(-15.0)
    t = torch.linspace(t_lo, t_hi, 201, dtype=torch.float64)[1:-1].requires_grad_()
    lam = -2 * torch.log(torch.tan(math.pi * t / 2))
    (dlam,) = torch.autograd.grad(lam.sum(), t)
    dens = d.log_prob(lam.detach()).exp() * dlam.abs()
    torch.testing.assert_close(dens, torch.full_like(dens, 1 / (t_hi - t_lo)), rtol=1e-8, atol=0)
    # and the closed form 1/(2π cosh(λ/2)) up to the truncation constant
    ratio = d.log_prob(lam.detach()).exp() * 2 * math.pi * torch.cosh(lam.detach() / 2)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / (t_hi - t_lo)), rtol=1e-8, atol=0)


def test_linear_beta_change_of_variables() -> None:
    # DDPM continuous linear β: log ᾱ(t) = −(β0 t + ½(β1 − β0) t²), λ = log(ᾱ/(1 − ᾱ)), t ~ U
    b0, b1 = 0.1, 20.0

    def lam_of(t: torch.Tensor) -> torch.Tensor:
        log_abar = -(b0 * t + 0.5 * (b1 - b0) * t**2)
        return log_abar - torch.log1p(-torch.exp(log_abar))

    d = LinearBetaDensity()
    one = torch.tensor(1.0, dtype=torch.float64)
    assert d.logsnr_min == pytest.approx(float(lam_of(one)), abs=1e-9)  # support ends at t = 1
    assert d.logsnr_min == pytest.approx(-10.05, abs=0.01)
    lo, hi = torch.tensor(1e-9, dtype=torch.float64), one.clone()
    for _ in range(100):  # bisection for λ(t_lo) = logsnr_max
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if lam_of(mid) > d.logsnr_max else (lo, mid)
    t_lo = float(lo)
    t = torch.linspace(t_lo, 1.0, 201, dtype=torch.float64)[1:-1].requires_grad_()
    lam = lam_of(t)
    (dlam,) = torch.autograd.grad(lam.sum(), t)
    dens = d.log_prob(lam.detach()).exp() * dlam.abs()
    torch.testing.assert_close(dens, torch.full_like(dens, 1 / (1.0 - t_lo)), rtol=1e-6, atol=0)


def test_edm_is_lognormal_in_s() -> None:
    # ln s ~ N(−1.2, 1.2²), λ = −2 ln s: q(λ) = N(−λ/2; −1.2, 1.2²)/2 / Z on the truncation
    d = EDMDensity(logsnr_min=-15.0, logsnr_max=15.0)
    ln_s = torch.distributions.Normal(torch.tensor(-1.2, dtype=torch.float64), 1.2)
    z = ln_s.cdf(torch.tensor(7.5, dtype=torch.float64)) - ln_s.cdf(
        torch.tensor(-7.5, dtype=torch.float64)
    )
    lam = torch.linspace(-14.9, 14.9, 301, dtype=torch.float64)
    ref = ln_s.log_prob(-lam / 2).exp() / 2 / z
    torch.testing.assert_close(d.log_prob(lam).exp(), ref, rtol=1e-9, atol=1e-15)


def test_logistic_density_closed_form() -> None:
    d = LogisticDensity(loc=1.0, scale=2.0, logsnr_min=-6.0, logsnr_max=9.0)
    lam = torch.linspace(-5.9, 8.9, 301, dtype=torch.float64).requires_grad_()
    f = torch.sigmoid((lam - 1.0) / 2.0)
    (pdf,) = torch.autograd.grad(f.sum(), lam)
    z = math.fsum([1 / (1 + math.exp(-(9.0 - 1.0) / 2)), -1 / (1 + math.exp(-(-6.0 - 1.0) / 2))])
    torch.testing.assert_close(d.log_prob(lam.detach()).exp(), pdf / z, rtol=1e-9, atol=0)


def test_normal_density_closed_form() -> None:
    """N(loc, scale²) truncated; SD3's logit-normal(m, s) over t is N(-2m, 2s) over λ, and EDM's
    log-normal σ (P_mean, P_std) is N(-2 P_mean, 2 P_std)."""
    d = NormalDensity(loc=0.0, scale=2.0, logsnr_min=-30.0, logsnr_max=30.0)
    t = torch.linspace(0.02, 0.98, 97, dtype=torch.float64)
    lam = -2 * torch.logit(t)
    # logit-normal(0, 1) density over t, pushed to λ: q(λ) = p(t) |dt/dλ|, dt/dλ = -t(1-t)/2
    p_t = torch.exp(-0.5 * torch.logit(t) ** 2) / (math.sqrt(2 * math.pi) * t * (1 - t))
    torch.testing.assert_close(d.log_prob(lam).exp(), p_t * t * (1 - t) / 2, rtol=1e-9, atol=0)
    edm, as_normal = EDMDensity(), NormalDensity(loc=2.4, scale=2.4)
    grid = torch.linspace(-14.9, 14.9, 301, dtype=torch.float64)
    torch.testing.assert_close(as_normal.log_prob(grid), edm.log_prob(grid), rtol=1e-12, atol=0)
    lo = NormalDensity(loc=1.0, scale=2.0, logsnr_min=-3.0, logsnr_max=4.0)
    z = 0.5 * (math.erf(1.5 / math.sqrt(2)) - math.erf(-2.0 / math.sqrt(2)))
    x = torch.tensor([0.0, 1.0, 3.5], dtype=torch.float64)
    ref = torch.exp(-0.5 * ((x - 1) / 2) ** 2) / (2 * math.sqrt(2 * math.pi)) / z
    torch.testing.assert_close(lo.log_prob(x).exp(), ref, rtol=1e-12, atol=0)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        CosineDensity(logsnr_min=3.0, logsnr_max=1.0)
    with pytest.raises(ValueError):
        LogisticDensity(scale=0.0)
    with pytest.raises(ValueError):
        NormalDensity(scale=-1.0)
    with pytest.raises(ValueError, match="unknown grid"):
        logsnr_grid("nope", 10, -15, 15)
    with pytest.raises(ValueError):
        logsnr_grid("linear", 0, -15, 15)


@pytest.mark.parametrize("kind", GRIDS)
@pytest.mark.parametrize(("steps", "lo", "hi"), [(1, -15.0, 15.0), (7, -10.0, 12.0), (50, -15, 15)])
def test_grid_monotone_with_endpoints(kind: str, steps: int, lo: float, hi: float) -> None:
    g = logsnr_grid(kind, steps, lo, hi)
    assert g.shape == (steps + 1,) and g.dtype == torch.float32
    assert float(g[0]) == lo and float(g[-1]) == hi
    assert (g.diff() > 0).all()


@pytest.mark.parametrize("kind", GRIDS)
def test_grid_spacing(kind: str) -> None:
    g = logsnr_grid(kind, 40, -12.0, 14.0).double()
    if kind == "linear":
        u = g
    elif kind == "cosine":
        u = (2 / math.pi) * torch.atan(torch.exp(-g / 2))  # the cosine schedule's t
    else:
        u = torch.exp(-g / 2) ** (1 / 7)  # EDM: s^(1/ρ) uniform, ρ = 7
    step = u.diff()
    torch.testing.assert_close(step, torch.full_like(step, float(step.mean())), rtol=2e-4, atol=0)
