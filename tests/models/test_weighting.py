import math

import pytest
import torch

from models.schedules import CosineDensity, EDMDensity, LinearBetaDensity, LogisticDensity
from models.weighting import (
    EDM,
    P2,
    WEIGHTINGS,
    X0,
    Constant,
    Debiased,
    LogVarHead,
    MinSNR,
    Normalized,
    Parametric,
    Sigmoid,
    Weighting,
    effective_weighting,
)

LAM = torch.linspace(-15.0, 15.0, 121, dtype=torch.float64)
SNR_MAX = 1e4


def _snr(lam: torch.Tensor, snr_max: float = SNR_MAX) -> torch.Tensor:
    return lam.exp().clamp(max=snr_max)


def _named(density: CosineDensity) -> dict[str, tuple[Weighting, torch.Tensor]]:
    """Each registry member with non-default knobs and its formula from METHODS.md §1."""
    snr = _snr(LAM)
    q = density.log_prob(LAM).exp()
    return {
        "constant": (Constant(), torch.ones_like(LAM)),
        "debiased": (Debiased(), snr**-0.5),
        "x0": (X0(), 1 / snr),
        "p2": (P2(k=1.0, gamma=0.5), (1 + snr) ** -0.5),
        "p2_default": (P2(), 1 / (1 + snr)),
        "min_snr": (MinSNR(gamma=5.0), snr.clamp(max=5.0) / snr),
        "edm": (EDM(sigma_data=0.5), 1 + 1 / (snr * 0.25)),
        "sigmoid": (Sigmoid(bias=2.0, density=density), torch.sigmoid(2.0 - LAM) / q),
        "parametric": (Parametric(p=0.7, k=0.3), (snr + 0.3) ** -0.7),
        "parametric_clamped": (
            Parametric(p=1.0, k=0.5, clamp=2.0),
            torch.minimum(1 / (snr + 0.5), torch.full_like(snr, 1 / 2.5)),
        ),
        "snr_max_1000": (X0(snr_max=1000.0), 1 / _snr(LAM, 1000.0)),
    }


def test_registry_names() -> None:
    assert set(WEIGHTINGS) == {
        "constant",
        "debiased",
        "x0",
        "p2",
        "min_snr",
        "edm",
        "sigmoid",
        "parametric",
        "learned",
    }
    assert WEIGHTINGS["learned"] is EDM  # EDM2 base; the head is added by the loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_named_weightings_match_formulas(dtype: torch.dtype) -> None:
    density = CosineDensity()
    for name, (w, ref) in _named(density).items():
        got = w(LAM.to(dtype))
        assert got.dtype == dtype and got.shape == LAM.shape, name
        rtol = 1e-5 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(got.double(), ref, rtol=rtol, atol=0, msg=name)


def test_snr_is_clamped_before_weighting() -> None:
    hi = torch.tensor([math.log(SNR_MAX), 12.0, 20.0])
    for w in (Debiased(), X0(), P2(k=0.0, gamma=1.0), Parametric(p=1.0)):
        out = w(hi)
        torch.testing.assert_close(out, out[:1].expand(3), msg=repr(w))
    assert float(X0(snr_max=100.0)(torch.tensor([10.0]))) == pytest.approx(0.01)


def test_finite_and_nonnegative_at_the_extremes() -> None:
    lam = torch.tensor([-math.inf, -1e4, -300.0, -100.0, -15.0, 0.0, 15.0, 100.0, 1e4, math.inf])
    density = EDMDensity()  # a thin-tailed q: sigmoid/q is largest there
    ws = [cls() for cls in (Constant, Debiased, X0, P2, MinSNR, EDM, Parametric)]
    ws += [Sigmoid(bias=-3.0, density=density), Parametric(p=2.0, k=0.0, clamp=3.0)]
    ws += [Parametric(p=-1.0, k=1.0), Normalized(X0(), CosineDensity())]
    for w in ws:
        out = w(lam)
        assert torch.isfinite(out).all() and (out >= 0).all(), repr(w)


def test_parametric_special_cases() -> None:
    lam = LAM.float()
    torch.testing.assert_close(Parametric(p=0.0, k=0.0)(lam), Constant()(lam))
    torch.testing.assert_close(Parametric(p=0.0, k=3.0)(lam), Constant()(lam))
    torch.testing.assert_close(Parametric(p=0.5, k=0.0)(lam), Debiased()(lam))
    torch.testing.assert_close(Parametric(p=1.0, k=0.0)(lam), X0()(lam))
    for gamma in (0.5, 1.0):
        torch.testing.assert_close(Parametric(p=gamma, k=1.0)(lam), P2(k=1.0, gamma=gamma)(lam))
    for gamma in (1.0, 5.0):
        got = gamma * Parametric(p=1.0, k=0.0, clamp=gamma)(lam)
        torch.testing.assert_close(got, MinSNR(gamma=gamma)(lam))


DENSITIES = {
    "cosine": CosineDensity(),
    "linear_beta": LinearBetaDensity(),
    "logistic": LogisticDensity(loc=1.0, scale=2.0),
    "edm": EDMDensity(),
}


def _all_weightings(density: CosineDensity) -> list[Weighting]:
    return [
        Constant(),
        Debiased(),
        X0(),
        P2(),
        MinSNR(),
        EDM(),
        Sigmoid(bias=1.0, density=density),
        Parametric(p=0.7, k=0.2, clamp=3.0),
    ]


@pytest.mark.parametrize("dname", list(DENSITIES))
def test_normalized_has_unit_mean_by_fine_simpson(dname: str) -> None:
    # Simpson's rule on 50x finer grid than the 4001-point trapezoid used inside Normalized
    density = DENSITIES[dname]
    n = 200_001
    lam = torch.linspace(density.logsnr_min, density.logsnr_max, n, dtype=torch.float64)
    h = float(lam[1] - lam[0])
    coef = torch.ones(n, dtype=torch.float64)
    coef[1:-1:2], coef[2:-1:2] = 4.0, 2.0
    q = density.log_prob(lam).exp()
    for w in _all_weightings(density):
        mean = float((coef * Normalized(w, density)(lam) * q).sum()) * h / 3
        assert mean == pytest.approx(1.0, rel=1e-5), repr(w)


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_normalized_constant_matches_lognormal_closed_form(power: float) -> None:
    # λ ~ N(μ, s²) truncated to [a, b], w = e^{−pλ} (debiased p=½, x0 p=1; no SNR clamp below b):
    # E[w] = e^{−pμ + p²s²/2} [Φ((b−μ+ps²)/s) − Φ((a−μ+ps²)/s)] / [Φ((b−μ)/s) − Φ((a−μ)/s)]
    a, b = -15.0, 9.0
    density = EDMDensity(logsnr_min=a, logsnr_max=b)
    mu, s = 2.4, 2.4
    phi = torch.distributions.Normal(0.0, 1.0).cdf
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    num = phi(t((b - mu + power * s**2) / s)) - phi(t((a - mu + power * s**2) / s))
    den = phi(t((b - mu) / s)) - phi(t((a - mu) / s))
    expected = math.exp(-power * mu + power**2 * s**2 / 2) * float(num / den)
    w = Debiased() if power == 0.5 else X0()
    assert Normalized(w, density).mean == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("dname", list(DENSITIES))
def test_normalized_has_unit_mean_by_monte_carlo(dname: str) -> None:
    density = DENSITIES[dname]
    lam = density.sample(200_000, torch.Generator().manual_seed(0)).double()
    grid = torch.linspace(density.logsnr_min, density.logsnr_max, 1001, dtype=torch.float64)
    checked = 0
    for w in _all_weightings(density):
        wn = Normalized(w, density)
        if float(wn(grid).max()) > 50.0:
            continue  # heavy-tailed under this q (e.g. x0 under cosine): CLT error bars unreliable
        vals = wn(lam)
        se = float(vals.std()) / math.sqrt(lam.numel())
        assert abs(float(vals.mean()) - 1.0) < 4 * se + 1e-6, repr(w)
        checked += 1
    assert checked >= 4


def test_sigmoid_effective_weight_and_its_mean() -> None:
    # w·q = sigmoid(b − λ) on the support, so E_q[w] = softplus(b − min) − softplus(b − max)
    density = CosineDensity(logsnr_min=-10.0, logsnr_max=12.0)
    w = Sigmoid(bias=1.5, density=density)
    lam = torch.linspace(-10.0, 12.0, 89, dtype=torch.float64)
    torch.testing.assert_close(effective_weighting(w, density, lam), torch.sigmoid(1.5 - lam))
    sp = torch.nn.functional.softplus
    expected = float(sp(torch.tensor(11.5)) - sp(torch.tensor(-10.5)))
    assert Normalized(w, density).mean == pytest.approx(expected, rel=1e-6)


def test_effective_weighting_is_w_times_q() -> None:
    density = LogisticDensity(loc=2.0, scale=1.5)
    lam = torch.linspace(-14.0, 14.0, 57, dtype=torch.float64)
    w = MinSNR(gamma=3.0)
    torch.testing.assert_close(
        effective_weighting(w, density, lam), w(lam) * density.log_prob(lam).exp()
    )
    assert (effective_weighting(w, density, torch.tensor([16.0, -16.0])) == 0).all()


def test_invalid_knobs() -> None:
    with pytest.raises(ValueError, match="density"):
        Sigmoid(bias=0.0)
    with pytest.raises(ValueError):
        P2(k=-1.0)
    with pytest.raises(ValueError):
        MinSNR(gamma=0.0)
    with pytest.raises(ValueError):
        Debiased(snr_max=0.0)


def test_logvar_head_zero_init_and_trainable() -> None:
    head = LogVarHead()
    lam = torch.linspace(-15, 15, 9)
    u = head(lam)
    assert u.shape == (9,) and torch.equal(u, torch.zeros(9))
    # EDM2: w/e^u · m + u is minimised at u = log(w·m); fit a target that varies with λ
    target = torch.log(1 + lam.exp().clamp(max=1e3)) * 0.3 - 1.0
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        u = head(lam)
        loss = (target.exp() * torch.exp(-u) + u).mean()
        loss.backward()
        opt.step()
    torch.testing.assert_close(head(lam).detach(), target, atol=0.1, rtol=0)
