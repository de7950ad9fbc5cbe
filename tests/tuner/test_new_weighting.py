"""Adding a weighting takes its class, its spec line and its test, all in this module: it is
registered here and trained through `python -m tuner.train` (in-process), no other file touched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import Tensor

from models.weighting import WEIGHTINGS, Weighting
from tuner.config import spec
from tuner.train import main


class CubicDecay(Weighting):
    """w = 1/(1 + c·SNR)^3."""

    def __init__(self, c: float = 1.0) -> None:
        self.c = float(c)

    def __call__(self, logsnr: Tensor) -> Tensor:
        return (1.0 + self.c * logsnr.exp()) ** -3


@contextmanager
def registered() -> Iterator[None]:
    """The weighting and its key, for the block only."""
    key = {"weighting.c": spec.Spec("float", 1.0, "c of the cubic decay", low=0.0, high=100.0)}
    params = {"c": "weighting.c"}
    with spec.extended(key), WEIGHTINGS.extended("cubic_decay", CubicDecay, params=params):
        yield


TINY = {
    "data": "ring8",
    "train.steps": 20,
    "train.batch": 64,
    "eval.every": 20,
    "eval.samples": 200,
    "sampler.steps": 8,
    "net.width": 32,
    "net.depth": 1,
    "weighting.normalize": False,
}


def train(tmp: Path, name: str, **overrides: object) -> dict:
    args = [f"--set={k}={json.dumps(v)}" for k, v in (TINY | overrides).items()]
    assert main([*args, "--out", str(tmp / name), "--quiet"]) == 0
    return json.loads((tmp / name / "metrics.json").read_text())


def test_its_value_at_snr_one() -> None:
    assert float(CubicDecay(2.0)(torch.zeros(1))) == pytest.approx(1 / 27)  # 1/(1 + 2)^3


def test_it_trains_through_tuner_train(tmp_path: Path) -> None:
    with registered():
        cubic = train(tmp_path, "cubic", weighting="cubic_decay", **{"weighting.c": 2.0})
        flat = train(tmp_path, "flat", weighting="cubic_decay", **{"weighting.c": 0.0})
    plain = train(tmp_path, "plain", weighting="constant")
    assert cubic["config"]["weighting"] == "cubic_decay" and cubic["config"]["weighting.c"] == 2.0
    # c = 0 is the constant weighting exactly (w = 1), so every logged number but timings agrees
    same = [k for k in plain["final"] if not k.startswith("time/")]
    assert {k: flat["final"][k] for k in same} == {k: plain["final"][k] for k in same}
    # c = 2 weights the clean levels down: a different loss from the first logged step on
    assert cubic["final"]["loss/denoise"] != plain["final"]["loss/denoise"]
    assert (tmp_path / "cubic" / "weighting.png").exists()


def test_it_is_gone_with_its_registration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "weighting=cubic_decay", "--quiet"]) == 2
    assert 'weighting="cubic_decay" is not allowed' in capsys.readouterr().err
