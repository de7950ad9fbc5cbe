import math

import pytest
import torch

from models.param import add_noise, eps_to_v, eps_to_x0
from models.schedules import (
    CosineDensity,
    EDMDensity,
    LinearBetaDensity,
    LogisticDensity,
    alpha_sigma,
)
from models.weighting import (
    EDM,
    P2,
    WEIGHTINGS,
    X0,
    Constant,
    Debiased,
    Flow,
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


def _losses(lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-level ε-, x0- and v-MSE of one fixed wrong prediction, through models.param.

    x = α x0 + σ ε, ε̂ = ε + δ; x̂0 and v̂ follow from ε̂ by the parameterisation, so the ratios
    of these losses are the conversion factors between the papers' loss spaces, computed here
    rather than typed (float64).
    """
    g = torch.Generator().manual_seed(0)
    n = lam.numel()
    x0 = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eps_hat = eps + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    x = add_noise(x0, eps, lam)
    v = eps_to_v(x, eps, lam)
    return {
        "eps": (eps_hat - eps).square().sum(1),
        "x0": (eps_to_x0(x, eps_hat, lam) - x0).square().sum(1),
        "v": (eps_to_v(x, eps_hat, lam) - v).square().sum(1),
    }


def _derived(density: CosineDensity) -> dict[str, tuple[Weighting, torch.Tensor]]:
    """Each registry member with non-default knobs and its value derived another way: the
    paper's weight in the paper's own loss space, converted to a multiplier of the ε-MSE by the
    computed loss ratios (``_losses``), or an identity with the VP schedule's α, σ. SNR is capped
    by evaluating at λ_c = min(λ, log snr_max)."""
    lam_c = LAM.clamp(max=math.log(SNR_MAX))
    loss = _losses(lam_c)
    per_x0 = loss["x0"] / loss["eps"]  # x0-MSE per unit ε-MSE (= 1/SNR)
    alpha, sigma = alpha_sigma(lam_c)
    snr = alpha**2 / sigma**2
    s_ve = sigma / alpha  # EDM's σ (VE): y = x0 + σ n
    lam_1000 = LAM.clamp(max=math.log(1000.0))
    loss_1000 = _losses(lam_1000)
    mass = (2 / math.pi) * (math.atan(math.exp(7.5)) - math.atan(math.exp(-7.5)))
    q = 1 / (torch.cosh(LAM / 2) * 2 * math.pi * mass)
    return {
        # DDPM "simple": the ε-MSE itself
        "constant": (Constant(), loss["eps"] / loss["eps"]),
        # Yu et al.: between the ε- and x0-losses, their geometric mean per example
        "debiased": (Debiased(), (loss["eps"] * loss["x0"]).sqrt() / loss["eps"]),
        # the x0-MSE
        "x0": (X0(), per_x0),
        # Choi et al. with k = 1: (1 + SNR)^−γ = σ^(2γ) of the VP schedule
        "p2": (P2(k=1.0, gamma=0.5), sigma),
        "p2_default": (P2(), sigma**2),
        # Hang et al.: min(SNR, γ) on the x0-MSE
        "min_snr": (MinSNR(gamma=5.0), snr.clamp(max=5.0) * per_x0),
        # Karras et al. 2022, Eq. 8: λ(σ) = (σ² + σ_d²)/(σ σ_d)² on the VE denoiser's x0-error
        "edm": (EDM(sigma_data=0.5), (s_ve**2 + 0.25) / (s_ve**2 * 0.25) * per_x0),
        # Kingma & Gao: the effective weight w·q is sigmoid(b − λ), with the cosine schedule's
        # q = sech(λ/2)/(2π Z) in closed form (Z: its mass on [−15, 15], F = (2/π) atan e^{λ/2})
        "sigmoid": (Sigmoid(bias=2.0, density=density), torch.sigmoid(2.0 - LAM) / q),
        # the family (SNR + k)^−p, min-capped at its value at SNR = clamp, with the SNR read
        # off the computed losses (ε-MSE/x0-MSE)
        "parametric": (Parametric(p=0.7, k=0.3), (1 / per_x0 + 0.3) ** -0.7),
        "parametric_clamped": (
            Parametric(p=1.0, k=0.5, clamp=2.0),
            torch.minimum(1 / (1 / per_x0 + 0.5), torch.full_like(per_x0, 1 / 2.5)),
        ),
        "snr_max_1000": (X0(snr_max=1000.0), loss_1000["x0"] / loss_1000["eps"]),
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
        "flow",
    }
    # EDM2's "learned" weighting is EDM's with the u(λ) head: weighting=edm, weighting.learned=true
    assert "learned" not in WEIGHTINGS and WEIGHTINGS["edm"] is EDM


def test_flow_weighting_is_the_velocity_mse_per_unit_eps_mse() -> None:
    """Rectified flow's velocity u = ε − x0 (SD3): its MSE of a wrong prediction, through the
    x0 implied by ε̂, per unit ε-MSE, at every level (no SNR cap)."""
    loss = _losses(LAM)
    g = torch.Generator().manual_seed(0)
    n = LAM.numel()
    x0 = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eps_hat = eps + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    x = add_noise(x0, eps, LAM)
    u_hat = eps_hat - eps_to_x0(x, eps_hat, LAM)
    u_mse = (u_hat - (eps - x0)).square().sum(1)
    torch.testing.assert_close(Flow()(LAM), u_mse / loss["eps"], rtol=1e-9, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_named_weightings_match_their_papers(dtype: torch.dtype) -> None:
    density = CosineDensity()
    for name, (w, ref) in _derived(density).items():
        got = w(LAM.to(dtype))
        assert got.dtype == dtype and got.shape == LAM.shape, name
        rtol = 1e-5 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(got.double(), ref, rtol=rtol, atol=0, msg=name)


def test_loss_space_conversions_are_the_documented_identities() -> None:
    # the computed ratios behind _derived: x0-MSE = ε-MSE/SNR, v-MSE = ε-MSE·(SNR + 1)/SNR
    loss = _losses(LAM)
    snr = LAM.exp()
    torch.testing.assert_close(loss["x0"], loss["eps"] / snr, rtol=1e-9, atol=0)
    torch.testing.assert_close(loss["v"], loss["eps"] * (snr + 1) / snr, rtol=1e-9, atol=0)


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


def _gauss(lam: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return torch.distributions.Normal(mean, std).log_prob(lam).exp()


def test_effective_weightings_match_kingma_gao_table() -> None:
    # Kingma & Gao 2023, Table 1 (the weighting implied by each loss and noise schedule, up to a
    # constant): ε-MSE with the cosine schedule sech(λ/2); v-MSE (EDM's w with σ_d = 1, since
    # v-MSE = ε-MSE·(1 + 1/SNR)) with the cosine schedule e^{−λ/2}; EDM N(λ; 2.4, 2.4²)
    # (e^{−λ} + 0.5²)/0.5². The debiased weighting with the cosine schedule is their sigmoid
    # weighting with b = 0 (e^{−λ/2}·sech(λ/2) = 2 sigmoid(−λ)). Checked as the ratio of our
    # w(λ)·q(λ) to the table's entry being one constant over λ (no SNR cap inside [−9, 9]).
    lam = torch.linspace(-9.0, 9.0, 73, dtype=torch.float64)
    cos = CosineDensity()
    table = {
        "eps-MSE, cosine": (Constant(), cos, 1 / torch.cosh(lam / 2)),
        "v-MSE, cosine": (EDM(sigma_data=1.0), cos, torch.exp(-lam / 2)),
        "EDM": (EDM(), EDMDensity(), _gauss(lam, 2.4, 2.4) * (torch.exp(-lam) + 0.25) / 0.25),
        "debiased, cosine": (Debiased(), cos, torch.sigmoid(-lam)),
    }
    for name, (w, density, entry) in table.items():
        ratio = effective_weighting(w, density, lam) / entry
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-6, atol=0, msg=name)
    # with EDM's own density the constant is the truncation's normaliser: exactly 1/Z
    z = float(torch.special.ndtr(torch.tensor((15 - 2.4) / 2.4)))
    z -= float(torch.special.ndtr(torch.tensor((-15 - 2.4) / 2.4)))
    edm = effective_weighting(EDM(), EDMDensity(), lam) / table["EDM"][2]
    torch.testing.assert_close(edm, torch.full_like(edm, 1 / z), rtol=1e-6, atol=0)
    assert (effective_weighting(MinSNR(), cos, torch.tensor([16.0, -16.0])) == 0).all()


def test_sigmoid_effective_weight_integrates_to_softplus() -> None:
    # ∫_lo^λ sigmoid(b − u) du = softplus(b − lo) − softplus(b − λ): the cumulative trapezoid of
    # the sigmoid weighting's w·q over a fine grid
    density = CosineDensity(logsnr_min=-10.0, logsnr_max=12.0)
    w = Sigmoid(bias=1.5, density=density)
    lam = torch.linspace(-10.0, 12.0, 22001, dtype=torch.float64)
    eff = effective_weighting(w, density, lam)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(eff, lam)])
    sp = torch.nn.functional.softplus
    want = sp(torch.tensor(11.5, dtype=torch.float64)) - sp(1.5 - lam)
    torch.testing.assert_close(cum[::1000], want[::1000], rtol=0, atol=1e-7)


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
