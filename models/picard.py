"""Parallel sampling by Picard iteration over the DDIM trajectory (ParaDiGMS, Shih et al. 2023).

In the VE variables y = x/α, s = σ/α the DDIM update of ``models.samplers.sample_ddim`` is
y_{i+1} = y_i + (s_{i+1} − s_i)·ε̂(α_i y_i, λ_i), so the whole trajectory is the fixed point of

    y_{i+1} = y_t + Σ_{j=t..i} (s_{j+1} − s_j)·ε̂(α_j y_j, λ_j)        (Shih et al. 2023, Eq. 4)

Each Picard sweep evaluates ε̂ at every position of a sliding window in one batched call and
recomputes the window by a cumulative sum. Positions whose update moved less than ``tol``
(RMS per dimension of x = α y, worst example) are accepted and the window slides past them
(Shih et al. 2023, Alg. 1). After k sweeps the first k positions are exact, so at most N sweeps
reproduce sequential DDIM; a smooth ε̂ needs far fewer.
"""

import torch
from torch import Tensor

from models.param import eps_to_x0, x0_to_eps
from models.schedules import EpsFn, alpha_sigma, grid_levels


def _eps(model: EpsFn, x: Tensor, logsnr: Tensor, clip_x0: float | None) -> Tensor:
    """ε̂ per row; with clipping, recomputed from the clamped x̂0 (as in sample_ddim)."""
    eps = model(x, logsnr)
    if clip_x0 is None:
        return eps
    return x0_to_eps(x, eps_to_x0(x, eps, logsnr).clamp(-clip_x0, clip_x0), logsnr)


@torch.no_grad()
def sample_picard(
    model: EpsFn,
    x: Tensor,
    logsnrs: Tensor,
    generator: torch.Generator | None = None,
    *,
    tol: float = 1e-3,
    window: int | None = None,
    max_iters: int | None = None,
    info: dict | None = None,
    clip_x0: float | None = None,
) -> Tensor:
    """DDIM's result computed by parallel Picard sweeps over a sliding window (ParaDiGMS).

    Args:
        model: ε-predictor ``model(x, logsnr: (B,)) -> eps_hat``.
        x: starting noise N(0, I) at ``logsnrs[0]``.
        logsnrs: increasing log-SNR levels (N + 1 of them).
        generator: unused (deterministic); accepted for the common signature.
        tol: accept a position when its update moved by at most ``tol`` (RMS per dimension of
            x, worst example); 0 runs until every position is exact (N sweeps at most).
        window: positions evaluated per sweep (default: all N).
        max_iters: cap on sweeps (default N, enough for exact convergence); when it stops
            the sweeps early, the current trajectory's end is used.
        info: if given, receives "iterations" (sweeps), "evals" (ε̂ evaluations per example,
            the final x̂0 one included) and "converged" (1.0 or 0.0).
        clip_x0: optional clamp of every x0 prediction (as in sample_ddim).

    Returns:
        The x0 prediction at ``logsnrs[-1]``.
    """
    levels = grid_levels(logsnrs)
    n = len(levels) - 1
    p = n if window is None else max(1, min(int(window), n))
    max_iters = n if max_iters is None else int(max_iters)
    lam = torch.tensor(levels, dtype=torch.float64)
    alpha64, sigma64 = alpha_sigma(lam)
    s = (sigma64 / alpha64).to(x.dtype).to(x.device)
    alpha = alpha64.to(x.dtype).to(x.device)
    lam = lam.to(x.dtype).to(x.device)
    view = (-1,) + (1,) * x.ndim  # per-position broadcast over (B, ...)

    traj = (x / alpha[0]).unsqueeze(0).repeat(n + 1, *([1] * x.ndim))  # y_0..y_N
    t, iters, evals = 0, 0, 0
    while t < n and iters < max_iters:
        e = min(t + p, n)
        ys = traj[t:e]
        xs = (ys * alpha[t:e].reshape(view)).flatten(0, 1)
        rows = lam[t:e].repeat_interleave(x.shape[0])
        eps = _eps(model, xs, rows, clip_x0).reshape(ys.shape)
        drift = (s[t + 1 : e + 1] - s[t:e]).reshape(view) * eps
        new = traj[t] + drift.cumsum(0)  # positions t+1..e (Shih et al. 2023, Eq. 4)
        moved = ((new - traj[t + 1 : e + 1]) * alpha[t + 1 : e + 1].reshape(view)).square()
        err = moved.flatten(2).mean(2).amax(1)  # per position, worst example
        traj[t + 1 : e + 1] = new
        traj[e + 1 :] = new[-1]  # positions not yet in a window start from the newest value
        iters, evals = iters + 1, evals + (e - t)
        bad = (err > tol**2).nonzero()
        # accept the converged prefix; position t+1 is exact after any sweep
        t = e if len(bad) == 0 else max(t + 1, t + int(bad[0]))
    x_end = traj[n] * alpha[n]
    lam_end = lam[n].expand(x.shape[0])
    eps_end = _eps(model, x_end, lam_end, clip_x0)
    if info is not None:
        info.update({"iterations": iters, "evals": evals + 1, "converged": float(t >= n)})
    return (x_end - s[n] * alpha[n] * eps_end) / alpha[n]
