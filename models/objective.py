"""The training objective: one denoising term (plain, TIW-DSM or ambient Tweedie) plus optional
consistency and contrastive terms (METHODS.md §2–4). Every term is per example (B,)."""

from typing import Any

import torch
from torch import Tensor, nn

from models.ambient import AmbientLoss, ConsistencyLoss
from models.cdl import CDLLoss
from models.losses import DenoiseLoss
from models.tiw import TIWCorrection


class Objective:
    """Composes the paper objectives around one denoising term.

    ``loss = denoise + consistency_coef·consistency + cdl_coef·cdl`` per example, where the
    denoising term is the Tweedie objective on the noisy data when ``ambient`` is given (else
    ``denoise``), reweighted and target-shifted by ``tiw`` when given (TIW-DSM).

    Args:
        denoise: the plain weighted ε-MSE (its weighting and density); may be None only when
            ``ambient`` is given.
        tiw: TIW-DSM weight and ε-correction from a discriminator (pre-trained in ``prepare``).
        ambient: Tweedie objective on noisy data (replaces ``denoise``).
        consistency: consistency loss below the data's noise level, weight ``consistency_coef``.
        cdl: contrastive diffusion loss, weight ``cdl_coef``; with TIW its examples carry the
            TIW weight r^a of their clean x0, so it contrasts the law TIW targets.
    """

    def __init__(
        self,
        denoise: DenoiseLoss | None,
        *,
        tiw: TIWCorrection | None = None,
        ambient: AmbientLoss | None = None,
        consistency: ConsistencyLoss | None = None,
        consistency_coef: float = 0.0,
        cdl: CDLLoss | None = None,
        cdl_coef: float = 0.0,
    ) -> None:
        if denoise is None and ambient is None:
            raise ValueError("Objective needs a denoising term: pass denoise= or ambient=")
        self.denoise = denoise
        self.tiw = tiw
        self.ambient = ambient
        self.consistency = consistency if consistency_coef > 0.0 else None
        self.consistency_coef = float(consistency_coef)
        self.cdl = cdl if cdl_coef > 0.0 else None
        self.cdl_coef = float(cdl_coef)
        density = (ambient or denoise).density
        self.tiw_clean_logsnr = float(density.logsnr_max)  # where r(x0) is read for CDL

    @property
    def logsnr_stop(self) -> float | None:
        """Where sampling must stop: the data's noise level when ambient has no consistency
        term (the sampler then returns E[x0 | x at s_n]); None otherwise."""
        if self.ambient is not None and self.consistency is None:
            return self.ambient.logsnr_n
        return None

    @property
    def discriminator(self) -> nn.Module | None:
        """The TIW discriminator when TIW is on (pre-trained by ``prepare``), else None."""
        return self.tiw.disc if self._tiw_active() else None

    def _tiw_active(self) -> bool:
        return self.tiw is not None and self.tiw.strength != 0.0

    def _denoise_term(self, model: nn.Module, x0: Tensor, generator: torch.Generator) -> Tensor:
        term = self.ambient if self.ambient is not None else self.denoise
        if not self._tiw_active():
            return term(model, x0, generator)
        # the term's own draws, then the TIW weight and correction at its model input
        eps, logsnr = term.draw(x0, generator)
        weight, correction = self.tiw(term.noisy_input(x0, eps, logsnr), logsnr)
        return term.core(model, x0, eps, logsnr, weight, correction)

    def __call__(
        self, model: nn.Module, x0: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """Per-example terms: "loss" (the total), "loss/denoise", and "loss/consistency",
        "loss/cdl" when active. Draws in the order denoise, consistency, cdl."""
        terms = {"loss/denoise": self._denoise_term(model, x0, generator)}
        total = terms["loss/denoise"]
        if self.consistency is not None:
            terms["loss/consistency"] = self.consistency(model, x0, generator)
            total = total + self.consistency_coef * terms["loss/consistency"]
        if self.cdl is not None:
            terms["loss/cdl"] = self.cdl(model, x0, generator, weight=self._cdl_weight(x0))
            total = total + self.cdl_coef * terms["loss/cdl"]
        return {"loss": total} | terms

    def _cdl_weight(self, x0: Tensor) -> Tensor | None:
        """With TIW, CDL's clean examples (and the noised ones built from them) are weighted by
        the TIW target's weight (r^a at the cleanest level where the correction is on), so its
        classifier sees the law TIW targets, not the observed (biased) one (METHODS.md §4);
        None without TIW."""
        if not self._tiw_active():
            return None
        clean = torch.full((x0.shape[0],), self.tiw_clean_logsnr, device=x0.device)
        return self.tiw.target_weight(x0, clean)

    def prepare(self, dataset: Any, generator: torch.Generator) -> dict[str, float]:
        """Pre-train the TIW discriminator on (dataset.train, dataset.reference); no-op else."""
        if not self._tiw_active():
            return {}
        reference = getattr(dataset, "reference", None)
        if reference is None:
            raise ValueError("TIW (tiw.strength > 0) needs a dataset with a reference set")
        density = (self.ambient or self.denoise).density
        return self.tiw.fit(dataset.train, reference, density, generator)

    def modules(self) -> dict[str, nn.Module]:
        """Learned parts to checkpoint with the model: the EDM2 log-variance head (trained with
        the model) and the TIW discriminator (pre-trained in ``prepare``, then frozen)."""
        term = self.ambient.denoise if self.ambient is not None else self.denoise
        out = {} if term.logvar_head is None else {"logvar_head": term.logvar_head}
        return out | ({"discriminator": self.tiw.disc} if self._tiw_active() else {})

    def parameters(self) -> list[nn.Parameter]:
        """The objective's own parameters that the optimiser trains with the model's."""
        return [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]
