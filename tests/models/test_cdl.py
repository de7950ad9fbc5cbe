"""Contrastive diffusion loss (models/cdl.py) against closed forms.

Gaussian data with their exact (linear) denoiser: the likelihood estimator returns the exact
log-density and the classifier logit equals log N(z; μ, Σ) − log N(z; α_ζ μ, α_ζ²Σ + σ_ζ² I)
(the pointwise integrand is then zero: these check the base term). Gaussian mixtures with their
exact denoiser, whose log-density is exact at every level and whose integrand is not zero: the
estimators (both forms, and the loss's own draws) converge to the exact log-density and logit,
and the default estimator's noise is below half the spread of the exact logit.
"""

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.analytic import GaussianMixture, bimodal, ring8
from models.cdl import (
    QMC_DIMS,
    CDLLoss,
    GaussianRef,
    cdl_logit,
    importance_density,
    mismatched_logsnr,
    neg_log_likelihood,
    qmc_draws,
)
from models.nets import MLP
from models.param import EpsModel
from models.schedules import alpha_sigma

COV = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, -0.1], [0.0, -0.1, 0.2]])
MEAN = torch.tensor([0.5, -1.0, 0.0])
GAUSS = GaussianMixture([1.0], [MEAN.tolist()], [COV.tolist()])


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ExactEps(nn.Module):
    def __init__(self, gm: GaussianMixture) -> None:
        super().__init__()
        self.gm = gm

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return self.gm.eps_star(x, logsnr)


def _draws(q: object, m: int, b: int, d: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    lam = q.sample(m * b, g).reshape(m, b)
    return lam, torch.randn(m, b, d, generator=g), q.log_prob(lam)


def test_gaussian_ref_matches_mixture_of_one() -> None:
    ref = GaussianRef.from_cov(MEAN, COV)
    x = GAUSS.sample(50, torch.Generator().manual_seed(0))
    lam = torch.linspace(-10, 10, 50)
    torch.testing.assert_close(ref.log_prob(x), GAUSS.log_prob(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref.eps(x, lam), GAUSS.eps_star(x, lam), rtol=1e-4, atol=1e-5)
    zeta = torch.full((50,), 1.5)
    torch.testing.assert_close(
        ref.noised(zeta).log_prob(x), GAUSS.log_prob(x, 1.5), rtol=1e-5, atol=1e-5
    )


def test_expected_and_pointwise_gaussian_terms_agree() -> None:
    # ½ ∫ (mmse_G(x, λ) − mmse_G(λ)) dλ = −log p_G(x) − h_G, with the closed-form pointwise
    # mmse_G(x, λ) = Σ_i (α² v_i/C_i)² + α²σ² u_i²/C_i², C_i = α² v_i + σ², u = Uᵀ(x − μ)
    ref = GaussianRef.from_cov(MEAN, COV)
    x = GAUSS.sample(5, torch.Generator().manual_seed(1)).double()
    lam = torch.linspace(-40.0, 40.0, 40001, dtype=torch.float64)
    a2, s2 = torch.sigmoid(lam)[:, None, None], torch.sigmoid(-lam)[:, None, None]
    v = ref.eigs.double()
    u = (x - MEAN.double()) @ ref.basis.double()
    c = a2 * v + s2
    pointwise = ((a2 * v / c) ** 2 + a2 * s2 * u**2 / c**2).sum(-1)  # (L, 5)
    expected = ref.mmse(lam.float()).double()[:, None]
    integral = 0.5 * torch.trapezoid(pointwise - expected, lam, dim=0)
    want = -GAUSS.log_prob(x.float()).double() - ref.entropy().double()
    torch.testing.assert_close(integral, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [1, 8])
def test_likelihood_is_exact_for_gaussian_data(m: int) -> None:
    # with the exact linear denoiser the pointwise integrand vanishes draw by draw
    ref = GaussianRef.from_cov(MEAN, COV)
    q = importance_density(ref.eigs)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(2)) * 2.0
    lam, eps, log_q = _draws(q, m, 64, 3, seed=3)
    nll = neg_log_likelihood(ExactEps(GAUSS), x, lam, eps, ref, log_q)
    torch.testing.assert_close(-nll, GAUSS.log_prob(x), rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("m", [1, 8])
def test_logit_is_exact_for_gaussian_data(m: int) -> None:
    # ℓ(z) = log N(z; μ, Σ) − log N(z; α_ζ μ, α_ζ²Σ + σ_ζ² I) (Wu et al. 2024), the ζ-density
    # obtained by querying the data denoiser at the mismatched level λ'
    ref = GaussianRef.from_cov(MEAN, COV)
    q = importance_density(ref.eigs)
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(4)) * 1.5
    zeta = torch.linspace(-2.0, 8.0, 64)
    lam, eps, log_q = _draws(q, m, 64, 3, seed=5)
    logit = cdl_logit(ExactEps(GAUSS), z, zeta, lam, eps, ref, log_q)
    a, s = alpha_sigma(zeta)
    want = torch.stack(
        [
            GAUSS.log_prob(z[i : i + 1])[0]
            - GaussianMixture(
                [1.0],
                [(a[i] * MEAN).tolist()],
                [(a[i] ** 2 * COV + s[i] ** 2 * torch.eye(3)).tolist()],
            ).log_prob(z[i : i + 1])[0]
            for i in range(64)
        ]
    )
    torch.testing.assert_close(logit, want, rtol=1e-4, atol=2e-3)


def test_mismatched_level_gives_the_noised_density_denoiser() -> None:
    # p_ζ diffused to λ is the data diffused to λ' (α'² = α_λ² α_ζ²), so its exact ε-prediction
    # at (w, λ) is (σ_λ/σ')·ε*(w, λ')
    gm = bimodal()
    lam = torch.tensor([-3.0, 0.0, 2.0, 6.0, 10.0])
    zeta = torch.tensor([4.0, 1.0, 0.0, 8.0, -2.0])
    lam_mis = mismatched_logsnr(lam, zeta)
    torch.testing.assert_close(
        torch.sigmoid(lam_mis), torch.sigmoid(lam) * torch.sigmoid(zeta), rtol=1e-5, atol=0.0
    )
    w = torch.randn(5, 2, generator=torch.Generator().manual_seed(6))
    scale = (alpha_sigma(lam)[1] / alpha_sigma(lam_mis)[1])[:, None]
    got = scale * gm.eps_star(w, lam_mis)
    want = torch.stack(
        [gm.noised(float(zeta[i])).eps_star(w[i : i + 1], float(lam[i]))[0] for i in range(5)]
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "clip", "tol_logp", "tol_logit"),
    [("bimodal", None, 0.15, 0.1), ("bimodal", 4.0, 0.15, 0.1), ("ring8", 4.0, 0.6, 0.6)],
)
def test_likelihood_and_logit_converge_on_a_mixture(
    name: str, clip: float | None, tol_logp: float, tol_logit: float
) -> None:
    # mixtures with their exact denoiser, 4096 importance-sampled levels; measured max errors
    # over these 6 points: bimodal 0.047 (log p) / 0.030 (logit) untruncated, 0.046 / 0.027
    # with clip 4; ring8 (clip 4) 0.31 / 0.31 (per-point std ≈ 8 nats: 0.125 per point here)
    gm = bimodal() if name == "bimodal" else ring8()
    ref = GaussianRef.from_cov(gm.mean, gm.covariance)
    q = importance_density(ref.eigs, clip=clip)
    x = gm.sample(6, torch.Generator().manual_seed(0))
    lam, eps, log_q = _draws(q, 4096, 6, 2, seed=2)
    nll = neg_log_likelihood(ExactEps(gm), x, lam, eps, ref, log_q)
    exact = gm.log_prob(x)
    assert (-nll - exact).abs().max() < tol_logp
    # the integral carries the answer: the base term alone is off by far more than the tolerance
    assert (ref.log_prob(x) - exact).abs().max() > 3 * tol_logp
    zeta = torch.tensor([0.0, 2.0, 4.0, 6.0, -1.0, 3.0])
    logit = cdl_logit(ExactEps(gm), x, zeta, lam, eps, ref, log_q)
    noised = torch.stack([gm.log_prob(x[i : i + 1], float(zeta[i]))[0] for i in range(6)])
    assert (logit - (exact - noised)).abs().max() < tol_logit
    base_logit = ref.log_prob(x) - ref.noised(zeta).log_prob(x)
    assert (base_logit - (exact - noised)).abs().max() > 3 * tol_logit


def _one_level_estimates(
    model: nn.Module, x: Tensor, lam: Tensor, eps: Tensor, ref: GaussianRef, log_q: Tensor
) -> Tensor:
    """(M, B) expected-form estimates of −log p(x) from one level each (one batched call)."""
    m, b = lam.shape
    flat = neg_log_likelihood(
        model,
        x.repeat(m, 1),
        lam.reshape(1, m * b),
        eps.reshape(1, m * b, -1),
        ref,
        log_q.reshape(1, m * b),
        pointwise=False,
    )
    return flat.reshape(m, b)


@pytest.mark.parametrize("name", ["bimodal", "ring8"])
def test_expected_form_converges_on_a_mixture(name: str) -> None:
    # pointwise=False: h_G + ½ ∫ (‖ε − ε̂‖² − mmse_G) dλ, whose integrand keeps the noise of ‖ε‖²
    # at every level; its mean over 8192 levels is the exact log p and logit within 4 standard
    # errors (estimated from the levels themselves) plus the truncation of q (clip 4, < 0.1)
    gm = bimodal() if name == "bimodal" else ring8()
    ref = GaussianRef.from_cov(gm.mean, gm.covariance)
    q = importance_density(ref.eigs)
    x = gm.sample(6, torch.Generator().manual_seed(0))
    m = 8192
    lam, eps, log_q = _draws(q, m, 6, 2, seed=4)
    zeta = torch.tensor([0.0, 2.0, 4.0, 6.0, -1.0, 3.0])
    model = ExactEps(gm)
    per_level = _one_level_estimates(model, x, lam, eps, ref, log_q)  # their mean: the estimate
    nll = neg_log_likelihood(model, x, lam, eps, ref, log_q, pointwise=False)
    torch.testing.assert_close(nll, per_level.mean(0), rtol=1e-4, atol=1e-4)
    se = per_level.std(0) / math.sqrt(m)
    exact = gm.log_prob(x)
    assert bool(((-nll - exact).abs() < 4 * se + 0.1).all())
    assert bool(((ref.entropy() + exact).abs() > 4 * se + 0.3).any())  # the integral matters
    logit = cdl_logit(model, x, zeta, lam, eps, ref, log_q, pointwise=False)
    logit_pw = cdl_logit(model, x, zeta, lam, eps, ref, log_q, pointwise=True)
    noised = torch.stack([gm.log_prob(x[i : i + 1], float(zeta[i]))[0] for i in range(6)])
    assert bool(((logit - (exact - noised)).abs() < 4 * se * math.sqrt(2) + 0.1).all())
    if name == "bimodal":  # ring8's reference is isotropic, v ≈ 1: G_ζ ≈ G, the forms agree
        assert float((logit - logit_pw).abs().max()) > 1e-3  # another estimator, same draws


def test_expected_form_is_unbiased_but_not_exact_for_gaussian_data() -> None:
    # pointwise=False (h_G + ½ ∫ (mmse − mmse_G) dλ): for Gaussian data its integrand is not
    # zero draw by draw, so the estimate varies, but its mean is the exact log-density
    ref = GaussianRef.from_cov(MEAN, COV)
    q = importance_density(ref.eigs)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2)) * 1.5
    lam, eps, log_q = _draws(q, 20000, 8, 3, seed=3)
    per_draw = _one_level_estimates(ExactEps(GAUSS), x, lam, eps, ref, log_q)
    assert float(per_draw.std(0).min()) > 0.1  # not the base term alone
    nll = neg_log_likelihood(ExactEps(GAUSS), x, lam, eps, ref, log_q, pointwise=False)
    se = per_draw.std(0) / math.sqrt(len(per_draw))
    assert bool(((-nll - GAUSS.log_prob(x)).abs() < 4 * se + 1e-3).all())
    exact_pw = neg_log_likelihood(ExactEps(GAUSS), x, lam[:1], eps[:1], ref, log_q[:1], True)
    torch.testing.assert_close(-exact_pw, GAUSS.log_prob(x), rtol=1e-4, atol=2e-3)


def test_the_loss_estimates_with_the_form_it_is_given() -> None:
    # CDLLoss(pointwise=False) hands the expected form to the estimator: with the same draws its
    # logit differs from the pointwise loss's, and its mean over repeats is the exact logit on a
    # mixture (within 4 standard errors plus the truncation of q at loc ± 4 scales)
    gm = bimodal()
    model = ExactEps(gm)
    x = gm.sample(6, torch.Generator().manual_seed(0))
    zeta = torch.tensor([0.0, 2.0, 4.0, 6.0, -1.0, 3.0])
    expected = CDLLoss(gm.mean, gm.covariance, pointwise=False, mc_points=64)
    pointwise = CDLLoss(gm.mean, gm.covariance, pointwise=True, mc_points=64)
    same = [
        loss.logit(model, x, zeta, torch.Generator().manual_seed(5))
        for loss in (expected, pointwise)
    ]
    assert float((same[0] - same[1]).abs().max()) > 1e-3
    g = torch.Generator().manual_seed(6)
    est = torch.stack([expected.logit(model, x, zeta, g) for _ in range(100)])
    noised = torch.stack([gm.log_prob(x[i : i + 1], float(zeta[i]))[0] for i in range(6)])
    err = est.mean(0) - (gm.log_prob(x) - noised)
    se = est.std(0) / math.sqrt(len(est))
    assert bool((err.abs() < 4 * se + 0.1).all()), float((err.abs() - 4 * se).max())


def _ring8_batch(loss: CDLLoss, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """A CDL batch on ring8 as the loss draws it: z (half clean, half ζ-noised), ζ, the exact
    logit log p(z) − log p_ζ(z), and the number of clean examples."""
    gm = ring8()
    g = torch.Generator().manual_seed(seed)
    x0 = gm.sample(n, g)
    zeta = loss.zeta.sample(n, g)
    xi = torch.randn(n, 2, generator=g)
    nc = n // 2
    a, s = (v[:, None] for v in alpha_sigma(zeta[nc:]))
    z = torch.cat([x0[:nc], a * x0[nc:] + s * xi[nc:]])
    noised = torch.stack([gm.log_prob(z[i : i + 1], float(zeta[i]))[0] for i in range(n)])
    return z, zeta, gm.log_prob(z) - noised, nc


def _logit_repeats(loss: CDLLoss, z: Tensor, zeta: Tensor, repeats: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    model = ExactEps(ring8())
    return torch.stack([loss.logit(model, z, zeta, g) for _ in range(repeats)])


@pytest.mark.parametrize(
    ("settings", "below_half"),
    [({}, True), ({"mc_points": 4, "qmc": False, "levels_loc": 0.0}, False)],
)
def test_default_logit_noise_is_below_half_the_exact_spread(
    settings: dict, below_half: bool
) -> None:
    # ring8 with its exact denoiser, the loss's own draws, 3 batches of 128 × 40 repeats: the
    # per-example standard deviation of the logit (RMS over examples) against the standard
    # deviation of the exact logit over examples, on the clean examples (the exact logit's
    # spread there is ≈ 1.1 nats) and on the whole half-clean, half-noised batch. At the
    # defaults (32 quasi-random levels, q centred at ζ's bulk) the noise is below half the
    # spread; the earlier setting (4 i.i.d. levels, q centred at 0) is not, at equal M·n
    loss = CDLLoss(ring8().mean, ring8().covariance, **settings)
    for batch in range(3):  # three CDL batches: the worst one must pass
        z, zeta, exact, nc = _ring8_batch(loss, 128, seed=batch)
        est = _logit_repeats(loss, z, zeta, 40, seed=10 + batch)
        noise = est.std(0)
        clean_ratio = float(noise[:nc].square().mean().sqrt() / exact[:nc].std())
        all_ratio = float(noise.square().mean().sqrt() / exact.std())
        assert (clean_ratio < 0.5) == below_half, (batch, clean_ratio)
        assert (all_ratio < 0.5) == below_half, (batch, all_ratio)


def test_default_logit_is_unbiased_on_ring8() -> None:
    # the mean of the default estimator over repeats is the exact logit (the quasi-random net is
    # scrambled, so each term is unbiased; the truncation of q to loc ± 4 scales costs little)
    loss = CDLLoss(ring8().mean, ring8().covariance)
    z, zeta, exact, _ = _ring8_batch(loss, 32, seed=2)
    est = _logit_repeats(loss, z, zeta, 200, seed=3)
    err = est.mean(0) - exact
    se = est.std(0) / math.sqrt(200)
    assert abs(float(err.mean())) < 0.05
    assert bool((err.abs() < 4 * se + 0.1).all()), float((err.abs() - 4 * se).max())


@pytest.mark.parametrize(("m", "d"), [(32, 2), (16, 3), (8, 40)])
def test_qmc_draws_are_stratified_and_normal(m: int, d: int) -> None:
    # each example's m levels hit each 1/m of q's mass once (a net); every coordinate of ε is
    # standard normal (the first QMC_DIMS quasi-random, the rest pseudo-random)
    q = importance_density(torch.tensor([1.0, 0.5]))
    n = 4000
    lam, eps = qmc_draws(q, m, n, (d,), torch.Generator().manual_seed(0))
    assert lam.shape == (m, n) and eps.shape == (m, n, d)
    strata = (q.cdf(lam.double()) * m).floor().clamp(max=m - 1).long()
    torch.testing.assert_close(strata.sort(0).values, torch.arange(m)[:, None].expand(m, n))
    flat = eps.reshape(-1, d)
    assert float(flat.mean(0).abs().max()) < 0.02
    assert float((flat.var(0) - 1).abs().max()) < 0.03
    assert min(d, QMC_DIMS) == d or float(flat[:, QMC_DIMS:].std()) == pytest.approx(1.0, abs=0.03)
    again, _ = qmc_draws(q, m, n, (d,), torch.Generator().manual_seed(0))
    assert torch.equal(lam, again)


def test_cdl_loss_is_the_logistic_loss_of_the_exact_logit() -> None:
    # Gaussian data, reference = their true moments, exact denoiser: every logit is exact, so
    # the loss is softplus(−ℓ) on the clean half and softplus(ℓ) on the ζ-noised half, ×B/n
    loss = CDLLoss(MEAN, COV, mc_points=2, fraction=0.5)
    x0 = GAUSS.sample(16, torch.Generator().manual_seed(8))
    out = loss(ExactEps(GAUSS), x0, torch.Generator().manual_seed(9))
    assert out.shape == (16,) and bool((out[8:] == 0).all()) and bool((out[:8] > 0).all())
    g = torch.Generator().manual_seed(9)  # replay the draws: ζ, then the ζ-noise
    zeta = loss.zeta.sample(8, g)
    xi = torch.randn(4, 3, generator=g)
    a, s = alpha_sigma(zeta[4:])
    z = torch.cat([x0[:4], a[:, None] * x0[4:8] + s[:, None] * xi])
    logit = GAUSS.log_prob(z) - torch.stack(
        [GAUSS.log_prob(z[i : i + 1], float(zeta[i]))[0] for i in range(8)]
    )
    want = torch.cat([F.softplus(-logit[:4]), F.softplus(logit[4:])]) * 2.0 / 3.0  # B/(n·D)
    torch.testing.assert_close(out[:8], want, rtol=1e-4, atol=2e-3)
    assert bool((zeta >= loss.zeta.logsnr_min).all()) and bool((zeta <= loss.zeta.logsnr_max).all())


def test_cdl_loss_trains_a_network() -> None:
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=1))
    nn.init.normal_(model.backbone.out.weight, std=0.3)
    x0 = bimodal().sample(64, torch.Generator().manual_seed(0))
    loss = CDLLoss(x0.mean(0), x0.var(0), mc_points=4, fraction=0.25)  # diagonal reference
    out = loss(model, x0, torch.Generator().manual_seed(1))
    assert out.shape == (64,) and torch.isfinite(out).all() and bool((out[16:] == 0).all())
    assert out.mean().item() == pytest.approx(out[:16].mean().item() / 4.0)
    out.mean().backward()
    assert model.backbone.out.weight.grad.abs().sum() > 0
    assert CDLLoss(x0.mean(0), x0.var(0), fraction=0.0)(model, x0, None).abs().sum() == 0
    assert math.isfinite(loss.q.loc) and loss.q.scale >= 1.0


def test_weight_multiplies_each_examples_loss() -> None:
    # weight[i] scales the logistic loss of example i, clean or ζ-noised (both built from x0[i]);
    # the draws do not depend on the weights, so half the weights 0 and half 3 give 0 and three
    # times the unweighted loss (no normalisation by the weights' mean, 1.5 here); weights
    # outside the CDL subset change nothing
    gm = bimodal()
    x0 = gm.sample(64, torch.Generator().manual_seed(0))
    loss = CDLLoss(x0.mean(0), torch.cov(x0.T), mc_points=8, fraction=0.5)
    model = ExactEps(gm)
    plain = loss(model, x0, torch.Generator().manual_seed(1))
    w = torch.tensor([0.0, 3.0]).repeat(32)
    weighted = loss(model, x0, torch.Generator().manual_seed(1), weight=w)
    torch.testing.assert_close(weighted, plain * w * (torch.arange(64) < 32))
    assert float(weighted[1:32:2].sum()) > 0 and bool((weighted[32:] == 0).all())
    with pytest.raises(ValueError, match="weight"):
        loss(model, x0, None, weight=torch.ones(10))


def test_weight_makes_the_classes_follow_the_target_law() -> None:
    # observed data: two unlike modes with weights 0.9/0.1; target 0.5/0.5. With the exact density ratio
    # as weight, the weighted CDL on observed batches has the mean of the plain CDL on target
    # batches (for any model: E_obs[r·L(x0)] = E_tgt[L(x0)]); unweighted it does not
    means, covs = (
        [[-1.2, 0.0], [1.2, 0.0]],
        [[[0.16, 0.0], [0.0, 0.16]], [[0.01, 0.0], [0.0, 0.01]]],
    )
    obs = GaussianMixture([0.9, 0.1], means, covs)
    tgt = GaussianMixture([0.5, 0.5], means, covs)
    model = ExactEps(tgt)
    loss = CDLLoss(tgt.mean, tgt.covariance, mc_points=4, fraction=1.0)
    b = 16384
    x_obs = obs.sample(b, torch.Generator().manual_seed(0))
    x_tgt = tgt.sample(b, torch.Generator().manual_seed(1))
    ratio = (tgt.log_prob(x_obs) - obs.log_prob(x_obs)).exp()
    weighted = loss(model, x_obs, torch.Generator().manual_seed(2), weight=ratio)
    plain_obs = loss(model, x_obs, torch.Generator().manual_seed(2))
    plain_tgt = loss(model, x_tgt, torch.Generator().manual_seed(3))
    se = math.sqrt(weighted.var() / b + plain_tgt.var() / b)
    assert abs(float(weighted.mean() - plain_tgt.mean())) < 4 * se
    assert abs(float(plain_obs.mean() - plain_tgt.mean())) > 4 * se  # the weights matter here


@pytest.mark.parametrize(("b", "n"), [(8, 1), (192, 3)])
def test_an_odd_subset_draws_the_middle_class_by_a_fair_coin(b: int, n: int) -> None:
    # fraction 1/64: n = max(1, round(b/64)); for odd n the first draw is a coin for the middle
    # example's class (clean: softplus(−ℓ) of x0 itself; noised: softplus(ℓ) of a ζ-noised z),
    # so over many steps the classes are balanced. Gaussian data: every logit is exact
    loss = CDLLoss(MEAN, COV, fraction=1 / 64)
    x0 = GAUSS.sample(b, torch.Generator().manual_seed(0))
    model = ExactEps(GAUSS)
    clean = 0
    for seed in range(200):
        out = loss(model, x0, torch.Generator().manual_seed(seed))
        assert bool((out[n:] == 0).all()) and bool((out[:n] > 0).all())
        g = torch.Generator().manual_seed(seed)  # replay: the coin, ζ, then the ζ-noise
        coin = int(torch.randint(0, 2, (1,), generator=g))
        zeta = loss.zeta.sample(n, g)
        xi = torch.randn(n - n // 2 - coin, 3, generator=g)
        mid = n // 2  # the example whose class the coin decides (else the first noised one)
        z = (
            x0[mid]
            if coin
            else alpha_sigma(zeta[mid])[0] * x0[mid] + alpha_sigma(zeta[mid])[1] * xi[0]
        )
        logit = GAUSS.log_prob(z[None]) - GAUSS.log_prob(z[None], float(zeta[mid]))
        want = F.softplus(-logit if coin else logit) * b / (n * 3)
        torch.testing.assert_close(out[mid : mid + 1], want, rtol=1e-4, atol=2e-3)
        clean += coin
    assert abs(clean / 200 - 0.5) < 4 * math.sqrt(0.25 / 200)
