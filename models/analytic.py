"""Gaussian mixtures, exact at every noise level: the analytic oracle the tests and the low-dim
presets share (densities, scores, posterior means and exact ε-predictions of x_λ).

Notation (docs/architecture.md, METHODS.md): the variance-preserving process indexed by the
log-SNR ``logsnr`` (λ), ``x_λ = α x0 + σ ε`` with ``α² = sigmoid(λ)``, ``σ² = sigmoid(−λ)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

LogSNR = float | Tensor | None


class GaussianMixture:
    """Mixture of full-covariance Gaussians with exact densities, scores and posterior means.

    Component k of x_λ is N(α μ_k, α² Σ_k + σ² I). Every method taking ``logsnr`` accepts
    None (the clean distribution), a float, or a tensor of shape (N,) (one level per example).
    Computations run in float64 via Cholesky factors; results are float32.

    Args:
        weights: (K,) non-negative mixture weights (normalised here).
        means: (K, D) component means.
        covs: (K, D, D) symmetric positive-definite component covariances.
    """

    def __init__(
        self,
        weights: Tensor | Sequence[float],
        means: Tensor | Sequence[Sequence[float]],
        covs: Tensor | Sequence[Sequence[Sequence[float]]],
    ) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        mu = torch.as_tensor(means, dtype=torch.float64)
        cov = torch.as_tensor(covs, dtype=torch.float64)
        if mu.ndim != 2 or cov.shape != (mu.shape[0], mu.shape[1], mu.shape[1]):
            raise ValueError(
                f"GaussianMixture expects means (K, D) and covs (K, D, D); "
                f"got {tuple(mu.shape)} and {tuple(cov.shape)}"
            )
        if w.shape[0] != mu.shape[0] or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"GaussianMixture weights must be K={mu.shape[0]} non-negative values")
        self._w = w / w.sum()
        self._mu = mu
        self._cov = 0.5 * (cov + cov.mT)
        self._chol = torch.linalg.cholesky(self._cov)  # fails loudly if a Σ_k is not PD

    # -- basic properties -----------------------------------------------------------------------

    @property
    def weights(self) -> Tensor:
        return self._w.float()

    @property
    def means(self) -> Tensor:
        return self._mu.float()

    @property
    def covs(self) -> Tensor:
        return self._cov.float()

    @property
    def dim(self) -> int:
        return self._mu.shape[1]

    @property
    def n_components(self) -> int:
        return self._mu.shape[0]

    @property
    def mean(self) -> Tensor:
        """Mean of the whole (clean) mixture, (D,)."""
        return (self._w[:, None] * self._mu).sum(0).float()

    @property
    def covariance(self) -> Tensor:
        """Covariance of the whole (clean) mixture: Σ w_k (Σ_k + μ_k μ_kᵀ) − m mᵀ, (D, D)."""
        m = (self._w[:, None] * self._mu).sum(0)
        second = (
            self._w[:, None, None] * (self._cov + self._mu[:, :, None] * self._mu[:, None])
        ).sum(0)
        return (second - m[:, None] * m[None]).float()

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, D={self.dim})"

    # -- sampling --------------------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw n clean samples, (n, D) float32."""
        k = torch.multinomial(self._w.float(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator).double()
        x = self._mu[k] + (self._chol[k] @ z[:, :, None])[..., 0]
        return x.float()

    def noised(self, logsnr: float) -> GaussianMixture:
        """The mixture of x_λ at one scalar λ: components N(α μ_k, α² Σ_k + σ² I)."""
        a2 = _sigmoid64(float(logsnr))
        s2 = _sigmoid64(-float(logsnr))
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self._w, math.sqrt(a2) * self._mu, a2 * self._cov + s2 * eye)

    # -- exact quantities of x_λ -----------------------------------------------------------------

    def _levels(self, x: Tensor, logsnr: LogSNR) -> tuple[Tensor, Tensor]:
        """α, σ in float64 with shape (N or 1,); logsnr None is the clean data (α=1, σ=0)."""
        if logsnr is None:
            one = torch.ones(1, dtype=torch.float64, device=x.device)
            return one, torch.zeros_like(one)
        lam = torch.as_tensor(logsnr, dtype=torch.float64, device=x.device).reshape(-1)
        if lam.numel() not in (1, x.shape[0]):
            raise ValueError(
                f"logsnr must be a float or a tensor of shape ({x.shape[0]},); "
                f"got {lam.numel()} values"
            )
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def _parts(self, x: Tensor, logsnr: LogSNR) -> dict[str, Tensor]:
        """Per-example, per-component Gaussian quantities of x_λ (float64).

        Returns a dict with ``logp`` (N, K) = log w_k + log N(x; α μ_k, C_k),
        ``prec_d`` (N, K, D) = C_k⁻¹ (x − α μ_k) and ``alpha``, ``sigma`` (N or 1,),
        where C_k = α² Σ_k + σ² I.
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}); got {tuple(x.shape)}")
        xd = x.to(torch.float64)
        alpha, sigma = self._levels(x, logsnr)
        dev = x.device
        mu, cov = self._mu.to(dev), self._cov.to(dev)
        eye = torch.eye(self.dim, dtype=torch.float64, device=dev)
        a = alpha[:, None, None, None]
        s = sigma[:, None, None, None]
        cov_l = a**2 * cov[None] + s**2 * eye  # (N|1, K, D, D): α² Σ_k + σ² I
        chol = torch.linalg.cholesky(cov_l)
        d = xd[:, None, :] - alpha[:, None, None] * mu[None]  # (N, K, D)
        z = torch.linalg.solve_triangular(chol, d[..., None], upper=False)  # L⁻¹ d
        prec_d = torch.linalg.solve_triangular(chol.mT, z, upper=True)[..., 0]  # C⁻¹ d
        logdet = 2.0 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)  # (N|1, K)
        log_norm = -0.5 * (z[..., 0] ** 2).sum(-1) - 0.5 * logdet
        log_norm = log_norm - 0.5 * self.dim * math.log(2 * math.pi)
        logp = self._w.to(dev).log()[None] + log_norm
        return {"logp": logp, "prec_d": prec_d, "alpha": alpha, "sigma": sigma}

    def log_prob(self, x: Tensor, logsnr: LogSNR = None) -> Tensor:
        """log p_λ(x), (N,); differentiable in x."""
        return torch.logsumexp(self._parts(x, logsnr)["logp"], dim=1).to(torch.float32)

    def responsibilities(self, x: Tensor, logsnr: LogSNR = None) -> Tensor:
        """Posterior component probabilities p(k | x_λ = x), (N, K)."""
        return torch.softmax(self._parts(x, logsnr)["logp"], dim=1).to(torch.float32)

    def _score64(self, x: Tensor, logsnr: LogSNR) -> tuple[Tensor, dict[str, Tensor]]:
        p = self._parts(x, logsnr)
        r = torch.softmax(p["logp"], dim=1)
        # ∇ log p_λ = Σ_k r_k · (−C_k⁻¹ (x − α μ_k))
        return -(r[..., None] * p["prec_d"]).sum(1), p

    def score(self, x: Tensor, logsnr: LogSNR) -> Tensor:
        """∇ₓ log p_λ(x), (N, D)."""
        return self._score64(x, logsnr)[0].to(torch.float32)

    def posterior_mean(self, x: Tensor, logsnr: LogSNR) -> Tensor:
        """E[x0 | x_λ = x], (N, D): Σ_k r_k (μ_k + α Σ_k C_k⁻¹ (x − α μ_k))."""
        p = self._parts(x, logsnr)
        r = torch.softmax(p["logp"], dim=1)
        cov = self._cov.to(x.device)
        # per-component Gaussian posterior mean (linear-Gaussian conditioning)
        m_k = (
            self._mu.to(x.device)[None]
            + p["alpha"][:, None, None] * (cov[None] @ p["prec_d"][..., None])[..., 0]
        )
        return (r[..., None] * m_k).sum(1).to(torch.float32)

    def eps_star(self, x: Tensor, logsnr: LogSNR) -> Tensor:
        """Exact ε-prediction E[ε | x_λ = x] = (x − α E[x0|x])/σ = −σ ∇log p_λ(x), (N, D)."""
        if logsnr is None:
            raise ValueError("eps_star needs a noise level: logsnr=None is the clean data (σ=0)")
        score, p = self._score64(x, logsnr)
        return (-p["sigma"][:, None] * score).to(torch.float32)  # Tweedie: ε* = −σ·score

    def mode_fractions(self, x: Tensor) -> Tensor:
        """Fraction of the rows of x assigned to each component by clean-responsibility argmax."""
        k = self.responsibilities(x).argmax(dim=1)
        counts = torch.bincount(k, minlength=self.n_components).to(torch.float32)
        return counts / max(x.shape[0], 1)


def _sigmoid64(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _isotropic(
    weights: Sequence[float], means: Sequence[Sequence[float]], std: float
) -> GaussianMixture:
    d = len(means[0])
    covs = (std**2 * torch.eye(d, dtype=torch.float64)).expand(len(means), d, d)
    return GaussianMixture(weights, means, covs)


def ring8() -> GaussianMixture:
    """8 equal modes on a circle of radius 1.4, std 0.12 (per-dim variance 0.98 + 0.0144)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 1.4 * torch.stack([angles.cos(), angles.sin()], dim=1)
    return _isotropic([1.0 / 8] * 8, means.tolist(), 0.12)


def bimodal(weights: Sequence[float] = (0.5, 0.5)) -> GaussianMixture:
    """Two modes at (∓1.2, 0), std 0.4."""
    return _isotropic(weights, [[-1.2, 0.0], [1.2, 0.0]], 0.4)


def gaussian2d() -> GaussianMixture:
    """x0 ~ N(0, diag(1.0, 0.25))."""
    return GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 0.25]]])
