"""Time-dependent discriminators d(x_λ, λ) for TIW-DSM (Kim et al. 2024, §3; METHODS.md §3).

A discriminator returns the logit of "x_λ comes from the noised reference set" against "from the
noised observed set". Trained on balanced batches with the logistic loss, its logit estimates the
time-dependent log density ratio log r(x_λ, λ) = log p_ref,λ(x_λ) − log p_obs,λ(x_λ), since the
optimal classifier is d* = p_ref,λ/(p_ref,λ + p_obs,λ) (Kim et al. 2024, Eq. 9).
Activations are smooth (SiLU) because TIW also needs the input gradient ∇ₓ log r.
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.nets import FourierEmbedding
from models.param import add_noise
from models.schedules import NoiseDensity


class MLPDiscriminator(nn.Module):
    """MLP discriminator for (B, D) data: forward(x, logsnr) -> logit (B,).

    Args:
        dim: data dimension D.
        width: hidden width.
        depth: number of hidden layers (each also receives the noise embedding).
        emb_dim: width of the noise embedding of c = λ/8.
    """

    def __init__(self, dim: int, width: int = 128, depth: int = 3, emb_dim: int = 32) -> None:
        super().__init__()
        self.embed = FourierEmbedding(emb_dim)
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.emb = nn.ModuleList(nn.Linear(emb_dim, width) for _ in range(depth))
        self.out = nn.Linear(width, 1)

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        e = F.silu(self.embed(logsnr.to(x.dtype) / 8.0))
        h = F.silu(self.inp(x) + self.emb[0](e))
        for layer, emb in zip(self.hidden, self.emb[1:], strict=True):
            h = F.silu(layer(h) + emb(e))
        return self.out(h).squeeze(1)


class ConvDiscriminator(nn.Module):
    """Small conv net for (B, C, H, W) images: forward(x, logsnr) -> logit (B,).

    Three 3x3 convs (the last two with stride 2), each with the noise embedding added per
    channel, then global average pooling and a linear read-out.

    Args:
        channels: image channels C.
        width: channels of the first conv (doubled by each strided conv).
        emb_dim: width of the noise embedding of c = λ/8.
    """

    def __init__(self, channels: int, width: int = 32, emb_dim: int = 32) -> None:
        super().__init__()
        chs = [width, 2 * width, 4 * width]
        self.embed = FourierEmbedding(emb_dim)
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(channels, chs[0], 3, padding=1),
                nn.Conv2d(chs[0], chs[1], 3, stride=2, padding=1),
                nn.Conv2d(chs[1], chs[2], 3, stride=2, padding=1),
            ]
        )
        self.emb = nn.ModuleList(nn.Linear(emb_dim, c) for c in chs)
        self.out = nn.Linear(chs[-1], 1)

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        e = F.silu(self.embed(logsnr.to(x.dtype) / 8.0))
        h = x
        for conv, emb in zip(self.convs, self.emb, strict=True):
            h = F.silu(conv(h) + emb(e)[:, :, None, None])
        return self.out(h.mean(dim=(2, 3))).squeeze(1)


def _split(data: Tensor, holdout: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random (train, held-out) split; the held-out part has at least one example."""
    perm = torch.randperm(len(data), generator=generator, device=generator.device)
    n_hold = min(len(data) - 1, max(1, round(holdout * len(data))))
    return data[perm[n_hold:]], data[perm[:n_hold]]


def _noised(
    data: Tensor, density: NoiseDensity, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """x_λ = α x0 + σ ε with λ ~ q, one level per example (draw order: λ then ε)."""
    logsnr = density.sample(len(data), generator).to(data.device, data.dtype)
    eps = torch.randn(data.shape, generator=generator, dtype=data.dtype, device=generator.device)
    eps = eps.to(data.device)
    return add_noise(data, eps, logsnr), logsnr


def _balanced_loss(
    disc: nn.Module, ref: tuple[Tensor, Tensor], obs: tuple[Tensor, Tensor]
) -> Tensor:
    """Logistic loss with reference = 1, observed = 0, each class weighted ½ (balanced)."""
    bce = F.binary_cross_entropy_with_logits
    loss_ref = bce(disc(*ref), torch.ones(len(ref[0]), device=ref[0].device))
    loss_obs = bce(disc(*obs), torch.zeros(len(obs[0]), device=obs[0].device))
    return 0.5 * (loss_ref + loss_obs)


def _train_step(
    disc: nn.Module,
    opt: torch.optim.Optimizer,
    ref: Tensor,
    obs: Tensor,
    half: int,
    density: NoiseDensity,
    generator: torch.Generator,
) -> float:
    """One step on `half` noised examples of each set; returns its loss."""
    i_ref = torch.randint(len(ref), (half,), generator=generator, device=generator.device)
    i_obs = torch.randint(len(obs), (half,), generator=generator, device=generator.device)
    loss = _balanced_loss(
        disc, _noised(ref[i_ref], density, generator), _noised(obs[i_obs], density, generator)
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train_discriminator(
    disc: nn.Module,
    observed: Tensor,
    reference: Tensor,
    density: NoiseDensity,
    *,
    steps: int,
    lr: float,
    batch: int,
    generator: torch.Generator,
    holdout: float = 0.1,
    patience: int = 10,
    eval_every: int | None = None,
    holdout_repeats: int = 4,
) -> dict[str, float]:
    """Train a time-dependent discriminator with the balanced logistic loss (TIW-DSM, Eq. 9).

    Every example is noised at its own λ ~ q. A held-out split of both sets (noised once, at
    ``holdout_repeats`` fixed draws per example) is scored every ``eval_every`` steps; training
    stops after ``patience`` evaluations without improvement and the best weights are restored.
    The discriminator is left in eval mode with ``requires_grad=False`` (it is frozen for TIW).

    Args:
        disc: ``disc(x, logsnr) -> logit (B,)``.
        observed: the large (biased) training set, label 0.
        reference: the small unbiased reference set, label 1.
        density: q(λ) for the noise levels (use the denoiser's training density).
        steps: maximum optimiser steps.
        lr: AdamW learning rate.
        batch: examples per step, half from each set.
        generator: source of every random draw (split, batches, noise).
        holdout: fraction of each set held out for early stopping.
        patience: evaluations without improvement before stopping.
        eval_every: steps between evaluations (default: steps // 50, at least 10).
        holdout_repeats: noise draws per held-out example.

    Returns:
        {"loss/ratio": best held-out loss, "ratio/steps": steps run, "ratio/train_loss": mean
        training loss over the last evaluation period}.
    """
    device = next(disc.parameters()).device
    obs_tr, obs_ho = _split(observed.to(device), holdout, generator)
    ref_tr, ref_ho = _split(reference.to(device), holdout, generator)
    rep = holdout_repeats
    ref_ho_n = _noised(ref_ho.repeat_interleave(rep, 0), density, generator)
    obs_ho_n = _noised(obs_ho.repeat_interleave(rep, 0), density, generator)
    eval_every = eval_every or max(10, steps // 50)
    half = max(1, batch // 2)

    disc.requires_grad_(True).train()
    opt = torch.optim.AdamW(disc.parameters(), lr=lr)
    best, best_state, bad, step, train_sum, train_n = math.inf, None, 0, 0, 0.0, 0
    last_train = math.nan
    while step < steps:
        loss = _train_step(disc, opt, ref_tr, obs_tr, half, density, generator)
        step += 1
        train_sum, train_n = train_sum + loss, train_n + 1
        if step % eval_every and step != steps:
            continue
        last_train, train_sum, train_n = train_sum / train_n, 0.0, 0
        disc.eval()
        with torch.no_grad():
            held = _balanced_loss(disc, ref_ho_n, obs_ho_n).item()
        disc.train()
        if held < best:
            best, best_state, bad = held, copy.deepcopy(disc.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        disc.load_state_dict(best_state)
    disc.eval().requires_grad_(False)
    return {"loss/ratio": best, "ratio/steps": float(step), "ratio/train_loss": last_train}
