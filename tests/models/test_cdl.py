"""Contrastive diffusion loss (models/cdl.py) against closed forms.

Gaussian data with their exact (linear) denoiser: the likelihood estimator returns the exact
log-density and the classifier logit equals log N(z; μ, Σ) − log N(z; α_ζ μ, α_ζ²Σ + σ_ζ² I).
A two-mode mixture with its exact denoiser: the estimator converges to the exact log-density.
"""

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.cdl import (
    CDLLoss,
    GaussianRef,
    cdl_logit,
    importance_density,
    mismatched_logsnr,
    neg_log_likelihood,
)
from models.nets import MLP
from models.param import EpsModel
from models.schedules import alpha_sigma
from tuner.data import GaussianMixture, bimodal, ring8

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
    assert (-nll - gm.log_prob(x)).abs().max() < tol_logp
    zeta = torch.tensor([0.0, 2.0, 4.0, 6.0, -1.0, 3.0])
    logit = cdl_logit(ExactEps(gm), x, zeta, lam, eps, ref, log_q)
    noised = torch.stack([gm.log_prob(x[i : i + 1], float(zeta[i]))[0] for i in range(6)])
    assert (logit - (gm.log_prob(x) - noised)).abs().max() < tol_logit


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
