"""Adding an objective term takes its class, its spec line and its test, all in this module: the
term is registered here, composes (and refuses to compose) by what it declares, and trains
through `python -m tuner.train` (in-process), no other file touched."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from models.objective import TERMS
from models.param import add_noise
from models.schedules import CosineDensity, NoiseDensity, randn_from
from tuner.config import spec
from tuner.config.terms import Parts
from tuner.train import main


class AbsoluteError:
    """coef · mean |ε̂ − ε| at λ ~ q: an L1 denoising term."""

    name = "l1"
    requires: ClassVar[dict[str, str]] = {}
    refuses: ClassVar[dict[str, str]] = {"ambient": "its target is the observations' noise"}

    def __init__(self, density: NoiseDensity, coef: float) -> None:
        self.density, self.coef = density, coef

    def draw(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        logsnr = self.density.sample(x0.shape[0], generator).to(x0.device, x0.dtype)
        return randn_from(generator, x0), logsnr

    def loss(self, model: nn.Module, x0: Tensor, drawn: tuple[Tensor, Tensor]) -> Tensor:
        eps, logsnr = drawn
        return (model(add_noise(x0, eps, logsnr), logsnr) - eps).abs().flatten(1).mean(1)

    def modules(self) -> dict[str, nn.Module]:
        return {}


def build_l1(*, coef: float, parts: Parts) -> AbsoluteError | None:
    return AbsoluteError(parts.density, coef) if coef > 0 else None


@contextmanager
def registered() -> Iterator[None]:
    """The term and its key, for the block only."""
    key = {"l1.coef": spec.Spec("float", 0.0, "weight of the L1 term", low=0.0, high=10.0)}
    entry = {"params": {"coef": "l1.coef"}, "switch": "l1.coef", "term": AbsoluteError}
    with spec.extended(key), TERMS.extended("l1", build_l1, **entry):
        yield


TINY = {
    "data": "ring8",
    "train.steps": 20,
    "train.batch": 64,
    "train.log_every": 5,
    "eval.every": 20,
    "eval.samples": 200,
    "sampler.steps": 8,
    "net.width": 32,
    "net.depth": 1,
}


def args(**overrides: object) -> list[str]:
    return [f"--set={k}={json.dumps(v)}" for k, v in (TINY | overrides).items()]


class Zero(nn.Module):
    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return torch.zeros_like(x)


def test_its_loss_against_a_closed_form() -> None:
    term = AbsoluteError(CosineDensity(), 1.0)
    x0 = torch.zeros(20000, 2)
    drawn = term.draw(x0, torch.Generator().manual_seed(0))
    loss = term.loss(Zero(), x0, drawn)
    assert torch.equal(loss, drawn[0].abs().mean(1))  # ε̂ = 0: the mean |ε| of its own draws
    assert float(loss.mean()) == pytest.approx(math.sqrt(2 / math.pi), rel=0.01)  # E|N(0, 1)|


def test_it_trains_through_tuner_train(tmp_path: Path) -> None:
    with registered():
        assert main([*args(**{"l1.coef": 0.5}), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["l1.coef"] == 0.5
    final = metrics["final"]
    assert final["loss/l1"] > 0 and final["eval/nll"] == final["eval/nll"]
    # the total is the denoising term plus coef times the new one (means over the last steps)
    want = final["loss/denoise"] + 0.5 * final["loss/l1"]
    assert final["loss/total"] == pytest.approx(want, rel=1e-6)


def test_it_composes_by_what_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with registered():
        assert main([*args(data="gaussian_noisy", **{"l1.coef": 1.0}), "--quiet"]) == 2
        err = capsys.readouterr().err
        naive = {"data": "gaussian_noisy", "l1.coef": 1.0, "ambient.tweedie": False}
        config = spec.resolve(naive)
    assert err == (
        "error: l1.coef=1 does not compose with ambient.tweedie=true on noisy data "
        "(data=gaussian_noisy): its target is the observations' noise; use l1.coef=0\n"
    )
    assert config["l1.coef"] == 1.0  # with naive denoising of the noisy data it composes
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
    with pytest.raises(spec.ConfigError, match="unknown key 'l1.coef'"):
        spec.resolve({"l1.coef": 1.0})  # gone with its registration
