import math

import pytest
import torch

from models.schedules import (
    DENSITIES,
    GRIDS,
    CosineDensity,
    CosmapDensity,
    EDMDensity,
    LinearBetaDensity,
    LogisticDensity,
    ModeDensity,
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
    "mode": lambda: ModeDensity(),
    "mode_negative_narrow": lambda: ModeDensity(scale=-0.8, logsnr_min=-10.0, logsnr_max=12.0),
    "mode_shifted": lambda: ModeDensity(scale=1.5, shift=3.0),
    "cosmap_shifted": lambda: CosmapDensity(shift=3.0),
    "normal_shifted": lambda: NormalDensity(loc=1.0, scale=2.0, shift=0.5),
    "linear_beta_shifted": lambda: LinearBetaDensity(shift=2.0),
}


def _grid(d: NoiseDensity, n: int = 20001) -> torch.Tensor:
    return torch.linspace(d.logsnr_min, d.logsnr_max, n, dtype=torch.float64)


def test_registry_names() -> None:
    assert set(DENSITIES) == {
        "cosine",
        "linear_beta",
        "logistic",
        "normal",
        "edm",
        "mode",
        "cosmap",
    }
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


# -- the resolution shift, SD3's mode and cosmap (METHODS.md §5) -----------------------------------
# Draws and log-densities of every density before noise.shift existed (models/schedules.py at
# 5f72eb8), with noise.loc = 0.7 and noise.scale = 1.3 where they apply: shift = 1 keeps them.
BEFORE_SHIFT = {
    "cosine": (
        ["-0x1.ed614ep+0", "-0x1.0a5bd4p+2", "-0x1.b0c86cp-3", "-0x1.169f4p-1"],
        ["-0x1.58a78ap+1", "-0x1.de3bf6p+0", "-0x1.94c22ap+1"],
    ),
    "linear_beta": (
        ["-0x1.7c8304p+2", "-0x1.112a8ap+3", "-0x1.6a1b9cp+1", "-0x1.b83d04p+1"],
        ["-0x1.3954bap+1", "-0x1.38b6d4p+1", "-0x1.ee6376p+1"],
    ),
    "logistic": (
        ["-0x1.b6f9dp-1", "-0x1.3fa298p+1", "0x1.0ccfe6p-1", "0x1.0054f2p-2"],
        ["-0x1.9c564cp+1", "-0x1.a7906ep+0", "-0x1.79f6fep+1"],
    ),
    "normal": (
        ["-0x1.02bacep-2", "-0x1.2336c8p+0", "0x1.2e4906p-1", "0x1.acdebep-2"],
        ["-0x1.4ed284p+2", "-0x1.31717p+0", "-0x1.19cdf8p+2"],
    ),
    "edm": (
        ["0x1.484f9cp-1", "-0x1.fc1cfap-1", "0x1.194d04p+1", "0x1.e1825cp+0"],
        ["-0x1.14d792p+2", "-0x1.0dcb94p+1", "-0x1.0220eap+1"],
    ),
}


@pytest.mark.parametrize("name", list(BEFORE_SHIFT))
def test_shift_one_leaves_every_existing_density_bit_identical(name: str) -> None:
    entry = DENSITIES.entry(name)
    config = {"noise.logsnr_min": -15.0, "noise.logsnr_max": 15.0, "noise.shift": 1.0}
    config |= {"noise.loc": 0.7, "noise.scale": 1.3}
    d = DENSITIES.build(name, config)
    assert entry.params["shift"] == "noise.shift" and d.shift == 1.0
    draws = d.sample(4, torch.Generator().manual_seed(1234))
    log_q = d.log_prob(torch.tensor([-3.0, 0.5, 4.0]))
    samples, logs = BEFORE_SHIFT[name]
    assert [float(v) for v in draws] == [float.fromhex(h) for h in samples]
    assert [float(v) for v in log_q] == [float.fromhex(h) for h in logs]


@pytest.mark.parametrize("shift", [0.5, 3.0])
@pytest.mark.parametrize("name", ["cosine", "logistic", "normal", "mode", "linear_beta"])
def test_shift_moves_every_level_by_minus_two_log_shift(name: str, shift: float) -> None:
    """SD3/Flux: t' = shift·t/(1 + (shift − 1)t) on rectified-flow time t = sigmoid(−λ/2), so a
    draw λ becomes λ' = −2 logit t' = λ − 2 log shift and F'(λ') = F(λ)."""
    wide = {"logsnr_min": -300.0, "logsnr_max": 300.0}  # truncation moves no mass here
    base = DENSITIES[name](**wide)
    moved = DENSITIES[name](**wide, shift=shift)
    lam = torch.linspace(-9.0, 9.0, 181, dtype=torch.float64)
    t = torch.sigmoid(-lam / 2)
    t_shifted = shift * t / (1 + (shift - 1) * t)
    lam_shifted = -2 * torch.logit(t_shifted)
    torch.testing.assert_close(lam_shifted, lam - 2 * math.log(shift), rtol=0, atol=1e-9)
    torch.testing.assert_close(moved.cdf(lam_shifted), base.cdf(lam), rtol=1e-9, atol=1e-12)
    # the density moves with its levels: q'(λ − 2 log shift) = q(λ)
    torch.testing.assert_close(
        moved.log_prob(lam_shifted), base.log_prob(lam), rtol=1e-9, atol=1e-9
    )


def test_shifted_normal_is_the_normal_moved() -> None:
    moved = NormalDensity(loc=1.0, scale=2.0, shift=3.0, logsnr_min=-30, logsnr_max=30)
    ref = NormalDensity(loc=1.0 - 2 * math.log(3.0), scale=2.0, logsnr_min=-30, logsnr_max=30)
    lam = torch.linspace(-20.0, 20.0, 101, dtype=torch.float64)
    torch.testing.assert_close(moved.log_prob(lam), ref.log_prob(lam), rtol=1e-12, atol=1e-12)


def _mode_t(u: torch.Tensor, s: float) -> torch.Tensor:
    """SD3's mode sampling as published: t = 1 − u − s·(cos²(πu/2) − 1 + u)."""
    return 1 - u - s * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)


@pytest.mark.parametrize("s", [-1.0, -0.5, 0.0, 0.81, 1.29, 1.6])
def test_mode_density_is_sd3s_mode_sampling(s: float) -> None:
    """u ~ U(0, 1) through SD3's map and λ = −2 logit t: F(λ(u)) = u and q(λ)·|dλ/du| = 1
    (s = −1 has tails q ~ e^(−|λ|/4): truncated far out, where they hold no mass)."""
    d = ModeDensity(scale=s, logsnr_min=-700.0, logsnr_max=700.0)
    u = torch.linspace(0.002, 0.998, 499, dtype=torch.float64).requires_grad_()
    lam = -2 * torch.logit(_mode_t(u, s))
    (dlam,) = torch.autograd.grad(lam.sum(), u)
    lam = lam.detach()
    assert (dlam > 0).all()  # λ increases with u: F(λ(u)) = u
    torch.testing.assert_close(d.cdf(lam), u.detach(), rtol=1e-9, atol=1e-12)
    dens = d.log_prob(lam).exp() * dlam
    torch.testing.assert_close(dens, torch.ones_like(dens), rtol=1e-8, atol=0)
    torch.testing.assert_close(d.icdf(u.detach()), lam, rtol=1e-9, atol=1e-9)


def test_mode_zero_is_uniform_time_and_the_law_is_symmetric() -> None:
    """s = 0: t = 1 − u is uniform, logit t is logistic(0, 1), λ is logistic(0, 2)."""
    lam = torch.linspace(-14.9, 14.9, 301, dtype=torch.float64)
    uniform, logistic = ModeDensity(scale=0.0), LogisticDensity(loc=0.0, scale=2.0)
    torch.testing.assert_close(uniform.log_prob(lam), logistic.log_prob(lam), rtol=1e-10, atol=0)
    heavy = ModeDensity(scale=1.29)
    torch.testing.assert_close(heavy.log_prob(lam), heavy.log_prob(-lam), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="mode scale"):
        ModeDensity(scale=1.8)  # above 2/(π − 2) the map is not monotone
    with pytest.raises(ValueError, match="shift"):
        ModeDensity(shift=0.0)


def test_mode_density_matches_diffusers_sampling() -> None:
    """diffusers' compute_density_for_timestep_sampling("mode") draws u' and training takes
    σ = 1 − u' (the scheduler's σ run from 1 down): its λ = −2 logit σ follows the density."""
    training_utils = pytest.importorskip("diffusers.training_utils")
    n = 20000
    u = training_utils.compute_density_for_timestep_sampling(
        "mode", n, mode_scale=1.29, generator=torch.Generator().manual_seed(0)
    ).double()
    lam = (-2 * torch.logit(1 - u)).sort().values
    d = ModeDensity(scale=1.29, logsnr_min=-60.0, logsnr_max=60.0)
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = (emp - d.cdf(lam)).abs().max()
    assert float(ks) < 1.95 / math.sqrt(n)


def test_cosmap_is_sd3s_cosmap_and_the_cosine_density() -> None:
    """SD3: t = 1 − 1/(tan(πu/2) + 1), u ~ U: λ = −2 logit t falls as u grows, F(λ(u)) = 1 − u,
    and the law is the cosine schedule's."""
    d = CosmapDensity(logsnr_min=-60.0, logsnr_max=60.0)
    u = torch.linspace(0.001, 0.999, 499, dtype=torch.float64)
    lam = -2 * torch.logit(1 - 1 / (torch.tan(math.pi * u / 2) + 1))
    torch.testing.assert_close(d.cdf(lam), 1 - u, rtol=1e-9, atol=1e-12)
    grid = torch.linspace(-14.9, 14.9, 301, dtype=torch.float64)
    cos = CosineDensity()
    torch.testing.assert_close(CosmapDensity().log_prob(grid), cos.log_prob(grid), rtol=0, atol=0)


def test_logit_normal_over_time_is_normal_over_logsnr() -> None:
    """SD3's logit-normal(m, s): logit t ~ N(m, s²) with λ = −2 logit t, i.e. N(−2m, 2s) over λ;
    (0, 1) is N(0, 2). Checked on draws made the SD3 way."""
    g = torch.Generator().manual_seed(2)
    for m, s in ((0.0, 1.0), (0.5, 0.8)):
        t = torch.sigmoid(m + s * torch.randn(20000, generator=g, dtype=torch.float64))
        lam = (-2 * torch.logit(t)).sort().values
        d = NormalDensity(loc=-2 * m, scale=2 * s, logsnr_min=-60.0, logsnr_max=60.0)
        emp = torch.arange(1, lam.numel() + 1, dtype=torch.float64) / lam.numel()
        assert float((emp - d.cdf(lam)).abs().max()) < 1.95 / math.sqrt(lam.numel())
