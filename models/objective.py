"""The training objective: the sum of its terms, each a registered class with one small protocol
(METHODS.md §1–4). Every term is per example (B,).

The terms of this project: the denoising term (``DenoiseLoss``; on noisy data the ambient
Tweedie objective, ``AmbientLoss``, in its place), TIW-DSM (``TIWLoss``, which reweights the
denoising term and replaces it), the consistency term (``ConsistencyLoss``) and the contrastive
term (``CDLLoss``). ``TERMS`` holds their builders (tuner/config/terms.py), in the order their
draws are made; the configuration's composition rules are read from each term's ``requires``
and ``refuses`` (tuner/config/spec.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from models.registry import Registry
from models.tiw import TIWCorrection, TIWLoss


class Term(Protocol):
    """One term of the objective: ``coef · loss(model, x0, draw(x0, generator))`` per example.

    ``name`` is its metric (loss/<name>); a term built under the name of an earlier one replaces
    it. ``requires`` maps each data fact ("noisy": noisy observations, "reference": an unbiased
    reference set) or registered term it needs to why; ``refuses`` maps each registered term it
    does not compose with to why. A term may also say ``logsnr_stop``, the highest log-SNR it
    trains when that is below the density's top (the ambient term: the data's own level).
    """

    name: str
    coef: float
    requires: ClassVar[dict[str, str]]
    refuses: ClassVar[dict[str, str]]

    def draw(self, x0: Tensor, generator: torch.Generator | None) -> Any:
        """Everything random the term needs for a batch, drawn from ``generator`` in order."""
        ...

    def loss(self, model: nn.Module, x0: Tensor, drawn: Any) -> Tensor:
        """The per-example loss (B,), deterministic given ``drawn``."""
        ...

    def modules(self) -> dict[str, nn.Module]:
        """Its learned parts, checkpointed with the model (trained with it where they require
        gradients)."""
        ...


# name -> builder(**its config keys, parts=...) -> Term | None (None: off for this config); an
# entry's info says its "switch" (the config key that turns it on) and its "term" class.
TERMS: Registry[Callable[..., Term | None]] = Registry("objective term")


class Objective:
    """The sum of the terms' per-example losses, each times its ``coef``.

    Args:
        terms: the terms, in the order they draw (one per name).
    """

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms: dict[str, Term] = {}
        for term in terms:
            if term.name in self.terms:
                raise ValueError(f"two objective terms are named {term.name!r}")
            self.terms[term.name] = term
        if not self.terms:
            raise ValueError("Objective needs at least one term")

    @property
    def tiw(self) -> TIWCorrection | None:
        """The TIW weight and correction when a term is TIW-DSM (its discriminator is the one
        part pre-trained before step 0), else None."""
        return next((t.tiw for t in self.terms.values() if isinstance(t, TIWLoss)), None)

    @property
    def prepared(self) -> bool:
        """Whether every pre-trained part is trained (the TIW discriminator, if any)."""
        return self.tiw is None or self.tiw.fitted

    @property
    def logsnr_stop(self) -> float | None:
        """Where sampling must stop: the highest level the terms train when every term stops
        below the density's top (the ambient term alone: the data's noise level, where the
        sampler returns E[x0 | x at s_n]); None when a term trains every level."""
        stops = [getattr(term, "logsnr_stop", None) for term in self.terms.values()]
        return None if any(s is None for s in stops) else max(stops)

    def __call__(
        self, model: nn.Module, x0: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """Per-example terms: "loss" (the total) and "loss/<name>" of each term, whose draws
        are made in the terms' order."""
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, term in self.terms.items():
            terms[f"loss/{name}"] = value = term.loss(model, x0, term.draw(x0, generator))
            total = term.coef * value if total is None else total + term.coef * value
        return {"loss": total} | terms

    def modules(self) -> dict[str, nn.Module]:
        """Learned parts to checkpoint with the model: the EDM2 log-variance head (trained with
        the model) and the TIW discriminator (pre-trained, then frozen)."""
        return {k: m for term in self.terms.values() for k, m in term.modules().items()}

    def parameters(self) -> list[nn.Parameter]:
        """The objective's own parameters that the optimiser trains with the model's."""
        return [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]

    def restore(self, states: Mapping[str, Any], prepared: bool) -> None:
        """Load the learned parts from a checkpoint's states; ``prepared``: they hold the trained
        discriminator."""
        for key, module in self.modules().items():
            module.load_state_dict(states[key])
        if prepared and self.tiw is not None:
            self.tiw.fitted = True
