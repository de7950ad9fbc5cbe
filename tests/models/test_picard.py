"""Parallel Picard sampling (models/picard.py): equals sequential DDIM at convergence."""

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from models.nets import MLP
from models.param import EpsModel
from models.picard import sample_picard
from models.samplers import sample_ddim
from models.schedules import logsnr_grid
from tuner.data import ring8


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_net() -> nn.Module:
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=2))
    nn.init.normal_(model.backbone.out.weight, std=0.5)  # not the zero predictor
    return model.eval()


class ExactEps(nn.Module):
    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return ring8().eps_star(x, logsnr)


@pytest.mark.parametrize("window", [None, 1, 7])
@pytest.mark.parametrize("grid", ["cosine", "karras"])
def test_converged_picard_equals_ddim(window: int | None, grid: str) -> None:
    model = _random_net()
    logsnrs = logsnr_grid(grid, 20)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    info: dict = {}
    got = sample_picard(model, x, logsnrs, tol=0.0, window=window, info=info)
    want = sample_ddim(model, x, logsnrs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert info["converged"] == 1.0 and 1 <= info["iterations"] <= 20
    if window == 1:  # a window of one is sequential DDIM: one sweep per step
        assert info["iterations"] == 20


def test_picard_needs_fewer_sweeps_than_steps_for_a_smooth_model() -> None:
    # exact ring8 denoiser, 50 cosine steps: measured 21 sweeps at tol 1e-3 (RMS per dim)
    logsnrs = logsnr_grid("cosine", 50)
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(2))
    info: dict = {}
    got = sample_picard(ExactEps(), x, logsnrs, tol=1e-3, info=info)
    want = sample_ddim(ExactEps(), x, logsnrs)
    assert info["converged"] == 1.0 and info["iterations"] < 30
    assert (got - want).square().mean().sqrt() < 1e-2


def test_max_iters_stops_early_and_reports() -> None:
    model = _random_net()
    logsnrs = logsnr_grid("cosine", 20)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))
    info: dict = {}
    out = sample_picard(model, x, logsnrs, tol=0.0, max_iters=2, info=info)
    assert info["iterations"] == 2 and info["converged"] == 0.0 and info["evals"] == 20 + 19 + 1
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_clip_matches_ddim() -> None:
    model = _random_net()
    logsnrs = logsnr_grid("cosine", 10)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(4))
    got = sample_picard(model, x, logsnrs, tol=0.0, clip_x0=0.5)
    want = sample_ddim(model, x, logsnrs, clip_x0=0.5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got.abs().max() <= 0.5 + 1e-6
