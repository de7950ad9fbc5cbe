"""Contrastive diffusion loss, CDL (Wu et al. 2024; METHODS.md §4).

Information-theoretic log-likelihood (Kong et al. 2023, ITD Eq. 6/9) in ε-terms, with a
Gaussian reference G = N(μ, Σ) of the data's mean and covariance:

    −log p(x) = −log p_G(x) + ½ ∫ E_ε[ ‖ε − ε̂(x_λ, λ)‖² − ‖ε − ε*_G(x_λ, λ)‖² ] dλ,

with x_λ = α x + σ ε. The integral runs over λ by importance sampling from a truncated logistic
q(λ). Taking the expectation over ε of the Gaussian term gives the form of METHODS.md,
h_G + ½ ∫ (mmse(x, λ) − mmse_G(λ)) dλ, since ½ ∫ (mmse_G(x, λ) − mmse_G(λ)) dλ =
−log p_G(x) − h_G; we use the pointwise form by default (a control variate with the same ε:
exact, with zero variance, when the data are Gaussian and ε̂ is their exact denoiser).

The density of data noised to level ζ, p_ζ, diffuses to level λ as the data diffuse to λ' with
α'² = α_λ² α_ζ² (a VP path composed with a VP path), so its ε-predictor at (w, λ) is
(σ_λ/σ')·ε̂(w, λ'): the denoiser queried at a mismatched level. The noise classifier's logit is
ℓ(z) = log p(z) − log p_ζ(z) and CDL is its logistic loss on half-clean, half-ζ-noised
examples (Wu et al. 2024, Eq. 8–10).
"""

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.schedules import LogisticDensity, alpha_sigma, bcast, draw_device, randn_from

EpsFn = Callable[[Tensor, Tensor], Tensor]  # eps_fn(x, logsnr) -> eps_hat


class GaussianRef:
    """N(μ, U diag(v) Uᵀ) with exact ε-predictions at every λ; μ and v may be per example.

    Args:
        mean: (D,) or (B, D).
        eigs: eigenvalues v, (D,) or (B, D), all > 0.
        basis: (D, D) orthonormal eigenvectors U (columns), or None for a diagonal Σ.
    """

    def __init__(self, mean: Tensor, eigs: Tensor, basis: Tensor | None = None) -> None:
        self.mean, self.eigs, self.basis = mean, eigs, basis

    @classmethod
    def from_cov(cls, mean: Tensor, cov: Tensor, floor: float = 1e-4) -> "GaussianRef":
        """From a (D, D) covariance (eigendecomposed) or (D,) variances (diagonal); eigenvalues
        are floored at ``floor`` (e.g. constant border pixels)."""
        mean = mean.reshape(-1).float()
        if cov.ndim == 1:
            return cls(mean, cov.float().clamp_min(floor))
        eigs, basis = torch.linalg.eigh(cov.double())
        return cls(mean, eigs.float().clamp_min(floor), basis.float())

    @property
    def dim(self) -> int:
        return self.eigs.shape[-1]

    def _rotate(self, v: Tensor) -> Tensor:
        return v if self.basis is None else v @ self.basis

    def _unrotate(self, v: Tensor) -> Tensor:
        return v if self.basis is None else v @ self.basis.T

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; μ, Σ) for x (..., D)."""
        u = self._rotate(x - self.mean)
        quad = (u.square() / self.eigs).sum(-1)
        return -0.5 * (quad + torch.log(2 * math.pi * self.eigs).sum(-1))

    def entropy(self) -> Tensor:
        """h_G = ½ Σ log(2πe v)."""
        return 0.5 * torch.log(2 * math.pi * math.e * self.eigs).sum(-1)

    def eps(self, w: Tensor, logsnr: Tensor) -> Tensor:
        """ε*_G(w, λ) = σ C⁻¹(w − α μ), C = α²Σ + σ²I (Tweedie), w (..., D), λ (...)."""
        alpha, sigma = (a[..., None] for a in alpha_sigma(logsnr))
        u = self._rotate(w - alpha * self.mean)
        return sigma * self._unrotate(u / (alpha**2 * self.eigs + sigma**2))

    def mmse(self, logsnr: Tensor) -> Tensor:
        """Expected ε-MMSE Σ SNR·v/(SNR·v + 1) at λ (...)."""
        return torch.sigmoid(logsnr[..., None] + torch.log(self.eigs)).sum(-1)

    def noised(self, zeta: Tensor) -> "GaussianRef":
        """The Gaussian of x_ζ = α_ζ x + σ_ζ ε, one ζ per example: N(α_ζ μ, α_ζ²Σ + σ_ζ² I)."""
        alpha, sigma = (a[:, None] for a in alpha_sigma(zeta))
        return GaussianRef(alpha * self.mean, alpha**2 * self.eigs + sigma**2, self.basis)


def importance_density(
    eigs: Tensor,
    logsnr_min: float = -15.0,
    logsnr_max: float = 15.0,
    clip: float | None = 4.0,
    min_scale: float = 2.0,
    min_loc: float | None = None,
) -> LogisticDensity:
    """Truncated logistic q(λ) for the likelihood integral (Kong et al. 2023, §3.3).

    The Gaussian's d mmse_G/dλ is a mixture of unit logistics at −log v_i; q is centred at their
    mean −mean(log v) (at least ``min_loc`` when given) with the scale matching their variance
    π²/3 + var(log v), but at least ``min_scale``: a mixture's fine structure (ring8: component
    variance 0.0144, λ ≈ 4) lies above the moment-matched Gaussian's scales, and there 1/q of a
    narrow q explodes (measured per-point std of the ring8 log p estimate: 22–30 nats at scale 1
    on [−15, 15], ≈ 8 at scale 2 on [−8, 8], with a truncation bias of ≈ −0.06 nats). As in the
    ITD code, q is truncated to loc ± clip·scale (and to [logsnr_min, logsnr_max]), leaving out
    tails where 1/q explodes; ``clip=None`` keeps the whole [logsnr_min, logsnr_max].
    """
    log_v = torch.log(eigs.double())
    var = float(log_v.var()) if log_v.numel() > 1 else 0.0
    loc = -float(log_v.mean()) if min_loc is None else max(-float(log_v.mean()), min_loc)
    loc = min(max(loc, logsnr_min + 1.0), logsnr_max - 1.0)
    scale = max(math.sqrt(1.0 + 3.0 * var / math.pi**2), min_scale)
    lo, hi = logsnr_min, logsnr_max
    if clip is not None:
        lo, hi = max(lo, loc - clip * scale), min(hi, loc + clip * scale)
    return LogisticDensity(lo, hi, loc=loc, scale=scale)


def mismatched_logsnr(logsnr: Tensor, zeta: Tensor) -> Tensor:
    """λ' with α'² = α_λ²·α_ζ²: the level at which x_ζ diffused to λ is a sample of the data."""
    log_a2 = F.logsigmoid(logsnr) + F.logsigmoid(zeta)
    return log_a2 - torch.log(-torch.expm1(log_a2))


def _diff_sq(eps: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """‖ε − a‖² − ‖ε − b‖² = (b − a)·(2ε − a − b), summed over the last axis (stable when a ≈ b)."""
    return ((b - a) * (2.0 * eps - a - b)).sum(-1)


def _integrand(
    eps: Tensor, eps_hat: Tensor, w: Tensor, logsnr: Tensor, ref: GaussianRef, pointwise: bool
) -> Tensor:
    if pointwise:
        return _diff_sq(eps, eps_hat, ref.eps(w, logsnr))
    return (eps - eps_hat).square().sum(-1) - ref.mmse(logsnr)


def _base(x: Tensor, ref: GaussianRef, pointwise: bool) -> Tensor:
    return -ref.log_prob(x) if pointwise else ref.entropy().expand(x.shape[0])


def neg_log_likelihood(
    eps_fn: EpsFn,
    x: Tensor,
    logsnrs: Tensor,
    eps: Tensor,
    ref: GaussianRef,
    log_q: Tensor,
    pointwise: bool = True,
) -> Tensor:
    """ITD estimate of −log p(x) in nats (B,), by importance sampling (Kong et al. 2023, Eq. 9).

    Args:
        eps_fn: ε-predictor of the density whose likelihood is estimated, (x, λ) -> ε̂.
        x: points (B, ...).
        logsnrs: (M, B) levels drawn from q.
        eps: (M, B, ...) noises, one per level.
        ref: the Gaussian reference (per example or shared).
        log_q: (M, B) log q(λ) of the draws.
        pointwise: Gaussian control variate with the same ε (True) or the METHODS.md form
            h_G + ½ ∫ (mmse − mmse_G) dλ (False); equal in expectation.
    """
    m, b = logsnrs.shape
    w = bcast(alpha_sigma(logsnrs)[0], eps) * x + bcast(alpha_sigma(logsnrs)[1], eps) * eps
    eps_hat = eps_fn(w.flatten(0, 1), logsnrs.flatten()).reshape(m, b, -1)
    f = _integrand(eps.reshape(m, b, -1), eps_hat, w.reshape(m, b, -1), logsnrs, ref, pointwise)
    return _base(x.flatten(1), ref, pointwise) + 0.5 * (f * torch.exp(-log_q)).mean(0)


def cdl_logit(
    model: EpsFn,
    z: Tensor,
    zeta: Tensor,
    logsnrs: Tensor,
    eps: Tensor,
    ref: GaussianRef,
    log_q: Tensor,
    pointwise: bool = True,
) -> Tensor:
    """Noise-classifier logit ℓ(z) = log p(z) − log p_ζ(z) (Wu et al. 2024, Eq. 8), (B,).

    Both likelihoods use the same levels and noises (common random numbers) and one batched
    forward pass of 2·M·B rows: ε̂(w, λ) for p and ε̂(w, λ') for p_ζ.

    Args:
        model: the data's ε-predictor ``model(x, logsnr) -> eps_hat``.
        z: points (B, ...).
        zeta: (B,) noise level of the p_ζ each example is contrasted with.
        logsnrs, eps, log_q: as in ``neg_log_likelihood``.
        ref: Gaussian reference of the clean data (its ζ-noised version is built here).
        pointwise: see ``neg_log_likelihood``.
    """
    m, b = logsnrs.shape
    alpha, sigma = alpha_sigma(logsnrs)
    w = bcast(alpha, eps) * z + bcast(sigma, eps) * eps
    zeta_rows = zeta.expand(m, b)
    lam_mis = mismatched_logsnr(logsnrs, zeta_rows)
    rows = torch.cat([w.flatten(0, 1), w.flatten(0, 1)])
    out = model(rows, torch.cat([logsnrs.flatten(), lam_mis.flatten()])).reshape(2, m, b, -1)
    # p_ζ's ε-prediction at (w, λ) is (σ_λ/σ')·ε̂(w, λ') with σ'² = sigmoid(−λ')
    scale = (sigma / alpha_sigma(lam_mis)[1])[..., None]
    e, wf = eps.reshape(m, b, -1), w.reshape(m, b, -1)
    ref_zeta = ref.noised(zeta)
    f = _integrand(e, out[0], wf, logsnrs, ref, pointwise)
    f_zeta = _integrand(e, scale * out[1], wf, logsnrs, ref_zeta, pointwise)
    nll = _base(z.flatten(1), ref, pointwise) + 0.5 * (f * torch.exp(-log_q)).mean(0)
    nll_zeta = _base(z.flatten(1), ref_zeta, pointwise) + 0.5 * (f_zeta * torch.exp(-log_q)).mean(0)
    return nll_zeta - nll


QMC_DIMS = 16  # ε coordinates drawn from the scrambled Sobol net (the rest pseudo-random)


def qmc_draws(
    q: LogisticDensity, m: int, n: int, shape: tuple[int, ...], generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Levels (m, n) and noises (m, n, *shape) by randomised quasi-Monte Carlo.

    Each of the n examples gets its own block of m consecutive points of one scrambled Sobol
    sequence over (u, ε₁..ε_k), k = min(D, QMC_DIMS) (a (0, m, k+1)-net when m is a power of 2:
    its levels are stratified, one per 1/m of q's mass, and so are the low-dimensional
    projections of (λ, ε)), mapped by λ = q⁻¹(u) and ε_i = Φ⁻¹(·); the other coordinates of ε
    are pseudo-random. Every point is uniform on the cube (scrambling), so each term, and the
    estimate, stays unbiased (Owen 1997); the Sobol seed is drawn from ``generator``.
    """
    d, dev = math.prod(shape), draw_device(generator)
    k = min(d, QMC_DIMS)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev))
    # torch's Sobol engine runs on the host only: its net is the one table a step copies over
    engine = torch.quasirandom.SobolEngine(1 + k, scramble=True, seed=seed)
    pts = engine.draw(m * n, dtype=torch.float64).to(dev).reshape(n, m, 1 + k).transpose(0, 1)
    logsnrs = q.icdf(pts[..., 0]).float()
    tiny = 1e-12  # Φ⁻¹ of a point at the cube's edge; truncates the normal beyond 7σ only
    eps = torch.special.ndtri(pts[..., 1:].clamp(tiny, 1.0 - tiny)).float()
    if k < d:
        rest = torch.randn((m, n, d - k), generator=generator, device=dev)
        eps = torch.cat([eps, rest], dim=-1)
    return logsnrs, eps.reshape(m, n, *shape)


class CDLLoss:
    """Contrastive diffusion loss: logistic loss of ℓ on half-clean, half-ζ-noised examples.

    The first n = max(1, round(fraction·B)) examples of the batch get the term (batches are
    already shuffled): the first n/2 clean (label 1: softplus(−ℓ)), the rest replaced by
    α_ζ x0 + σ_ζ ξ (label 0: softplus(ℓ)); for odd n the middle example's class is a fair coin
    (drawn first), so the two classes are balanced on average. The result is (B,), zero outside the subset and
    scaled by B/n inside, so its batch mean is the mean CDL over the subset whatever the
    fraction. The logistic loss is divided by the data dimension D: the paper adds it to a
    denoising loss summed over dimensions, ours is averaged, so ``coef`` keeps the paper's
    λ_cdl. ζ ~ logistic(zeta_loc, zeta_scale) truncated to [zeta_min, zeta_max], one per
    example. Cost: one forward (and backward) of 2·mc_points·n rows: at the defaults the
    batch's own size B (2·32·4 for B = 256; 2·32·1 for B = 64), about twice a plain step.

    The estimator of ℓ. Its noise is what the classifier sees, and the softplus of a noisy
    logit is biased upward, so the Monte-Carlo budget M·n is spent on many levels for few
    examples (defaults M = 32, fraction 1/64: n = 4 of a 256 batch, half the cost of the earlier
    M = 4 on a quarter of the batch), and the levels and noises come from a randomised
    quasi-Monte Carlo net per example (``qmc_draws``; ``qmc=False``: i.i.d. draws). The levels
    follow ``importance_density`` centred no lower than zeta_loc + zeta_scale: ℓ's integrand
    vanishes for λ well below ζ (there p and p_ζ diffuse to nearly the same level), so levels
    below the ζ density's bulk are wasted. Measured on ring8 with its exact denoiser
    (bench/results/cdl_mismatch.json, "estimator_noise", 3 batches of 128): the per-example
    standard deviation of ℓ on clean examples is 0.38–0.41 nats against a 1.08–1.30-nat spread
    of the exact ℓ (earlier estimator, M = 4 i.i.d. centred at the reference: 3.06–3.25), and the
    logistic loss's upward bias 0.007–0.010 nats (earlier: 0.38–0.42); the test
    ``test_default_logit_noise_is_below_half_the_exact_spread`` keeps the ratio below ½.

    Composition with TIW: ``weight`` (B,) is the importance weight of each clean example x0[i]
    (e.g. r^a of TIW-DSM: ``example_weight``, or the caller's ``weight``); the logistic loss of
    example i, clean or noised, is multiplied by weight[i], so both classes follow the
    reweighted (target) law. No normalisation: with weights of mean 1 over the observed law (a
    density ratio) the weighted loss has the target's expectation, as the TIW denoising term.

    Args:
        data_mean: (D,) mean of the (training) data, flattened.
        data_cov: (D, D) covariance, or (D,) per-dimension variances (diagonal reference).
        zeta_loc, zeta_scale, zeta_min, zeta_max: the ζ density (log-SNR).
        mc_points: M, importance-sampled levels per likelihood.
        fraction: fraction of the batch that gets the term (0 = off: returns zeros).
        logsnr_min, logsnr_max: truncation of the likelihood integral.
        clip: truncation of the integral to loc ± clip·scale of q (None: off).
        pointwise: Gaussian control variate (see ``neg_log_likelihood``).
        qmc: randomised quasi-Monte Carlo levels and noises (False: i.i.d.).
        levels_loc: centre of q (None: the larger of the reference's centre and
            zeta_loc + zeta_scale).
        coef: its weight λ_cdl in the objective's total.
        example_weight: optional ``example_weight(x0) -> (B,)``, the importance weight of each
            clean example when the objective targets a reweighted law (TIW-DSM's r^a).
    """

    # an objective term (models/objective.py's Term)
    name = "cdl"
    requires: ClassVar[dict[str, str]] = {}
    # its classifier learns the observed law; on noisy data with the Tweedie objective that is
    # the noisy law the Tweedie term corrects
    refuses: ClassVar[dict[str, str]] = {"ambient": "its classifier would fit the noisy law"}

    def __init__(
        self,
        data_mean: Tensor,
        data_cov: Tensor,
        *,
        zeta_loc: float = 2.0,
        zeta_scale: float = 1.5,
        zeta_min: float = -2.0,
        zeta_max: float = 8.0,
        mc_points: int = 32,
        fraction: float = 1 / 64,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        clip: float | None = 4.0,
        pointwise: bool = True,
        qmc: bool = True,
        levels_loc: float | None = None,
        coef: float = 1.0,
        example_weight: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if mc_points < 1 or not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"need mc_points >= 1 and fraction in [0, 1], got {mc_points}, {fraction}"
            )
        self.ref = GaussianRef.from_cov(data_mean, data_cov)
        self.zeta = LogisticDensity(zeta_min, zeta_max, loc=zeta_loc, scale=zeta_scale)
        if levels_loc is None:
            self.q = importance_density(
                self.ref.eigs, logsnr_min, logsnr_max, clip, min_loc=zeta_loc + zeta_scale
            )
        else:
            scale = importance_density(self.ref.eigs, logsnr_min, logsnr_max, clip).scale
            lo, hi = logsnr_min, logsnr_max
            if clip is not None:
                lo, hi = max(lo, levels_loc - clip * scale), min(hi, levels_loc + clip * scale)
            self.q = LogisticDensity(lo, hi, loc=levels_loc, scale=scale)
        self.mc_points = int(mc_points)
        self.fraction = float(fraction)
        self.pointwise = pointwise
        self.qmc = qmc
        self.coef = float(coef)
        self.example_weight = example_weight

    def to(self, device: torch.device | str) -> "CDLLoss":
        r = self.ref
        basis = None if r.basis is None else r.basis.to(device)
        self.ref = GaussianRef(r.mean.to(device), r.eigs.to(device), basis)
        return self

    def draw_levels(
        self, n: int, shape: tuple[int, ...], generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Levels (M, n), noises (M, n, *shape) and log q (M, n) for n likelihoods."""
        m = self.mc_points
        if self.qmc:
            logsnrs, eps = qmc_draws(self.q, m, n, shape, generator)
        else:
            logsnrs = self.q.sample(m * n, generator).reshape(m, n)
            eps = torch.randn((m, n, *shape), generator=generator, device=draw_device(generator))
        return logsnrs, eps, self.q.log_prob(logsnrs)

    def logit(
        self, model: nn.Module, z: Tensor, zeta: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """The estimate of ℓ(z) = log p(z) − log p_ζ(z) (n,) with this loss's draws."""
        return self._logit(model, z, zeta, self.draw_levels(z.shape[0], z.shape[1:], generator))

    def _logit(
        self, model: nn.Module, z: Tensor, zeta: Tensor, levels: tuple[Tensor, Tensor, Tensor]
    ) -> Tensor:
        """ℓ(z) at the drawn levels, noises and log q (``draw_levels``)."""
        if self.ref.mean.device != z.device:
            self.to(z.device)
        logsnrs, eps, log_q = levels
        dev, dt = z.device, z.dtype
        return cdl_logit(
            model,
            z,
            zeta,
            logsnrs.to(dev, dt),
            eps.to(dev, dt),
            self.ref,
            log_q.to(dev, dt),
            self.pointwise,
        )

    def draw(self, x0: Tensor, generator: torch.Generator | None) -> tuple:
        """The subset's clean count (a fair coin for an odd subset), its ζ's, the ζ-noise, then
        the levels, noises and log q of its likelihoods (``draw_levels``); () when off."""
        b = x0.shape[0]
        if self.fraction == 0.0 or b == 0:
            return ()
        n = min(b, max(1, round(self.fraction * b)))
        n_clean, dev = n // 2, draw_device(generator, x0.device)
        if n % 2:  # the odd example's class is a fair coin: the classes stay balanced on average
            n_clean += int(torch.randint(0, 2, (1,), generator=generator, device=dev))
        zeta = self.zeta.sample(n, generator).to(x0.device, x0.dtype)
        xi = randn_from(generator, x0[n_clean:n])
        return n_clean, zeta, xi, self.draw_levels(n, x0.shape[1:], generator)

    def loss(
        self, model: nn.Module, x0: Tensor, drawn: tuple, weight: Tensor | None = None
    ) -> Tensor:
        """Per-example CDL (B,) at the draws ``drawn``; ``weight``: optional (B,) importance
        weight of each x0 (default: ``example_weight`` when given; see the class docstring)."""
        b = x0.shape[0]
        out = torch.zeros(b, device=x0.device, dtype=x0.dtype)
        if weight is not None and weight.shape != (b,):
            raise ValueError(f"CDL weight must have shape ({b},), got {tuple(weight.shape)}")
        if not drawn:
            return out
        if weight is None and self.example_weight is not None:
            weight = self.example_weight(x0)
        n_clean, zeta, xi, levels = drawn
        n = zeta.shape[0]
        a_z, s_z = alpha_sigma(zeta[n_clean:])
        noised = bcast(a_z, xi) * x0[n_clean:n] + bcast(s_z, xi) * xi
        z = torch.cat([x0[:n_clean], noised])
        logit = self._logit(model, z, zeta, levels)
        # logistic loss: clean = 1, noised = 0 (Wu et al. 2024, Eq. 10), per data dimension
        loss = torch.cat([F.softplus(-logit[:n_clean]), F.softplus(logit[n_clean:])])
        if weight is not None:
            loss = loss * weight[:n].to(loss.dtype)
        out[:n] = loss * (b / (n * self.ref.dim))
        return out

    def modules(self) -> dict[str, nn.Module]:
        """None: the term has no learned part of its own."""
        return {}

    def __call__(
        self,
        model: nn.Module,
        x0: Tensor,
        generator: torch.Generator | None,
        weight: Tensor | None = None,
    ) -> Tensor:
        """Per-example CDL (B,); draws ζ, the ζ-noise, then the levels and ε's. ``weight``:
        optional (B,) importance weight of each x0 (see the class docstring)."""
        return self.loss(model, x0, self.draw(x0, generator), weight)
