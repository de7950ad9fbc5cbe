"""Parallel Picard sampling (models/picard.py): equals sequential DDIM at convergence."""

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from models.analytic import ring8
from models.nets import MLP
from models.param import EpsModel
from models.picard import sample_picard
from models.samplers import sample_ddim
from models.schedules import logsnr_grid


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


class Spy(nn.Module):
    """Records every call's inputs: one call per Picard sweep, then the final x̂0 call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        self.calls.append((x.clone(), logsnr.clone()))
        return self.model(x, logsnr)


def _sweeps(spy: Spy, logsnrs: Tensor, batch: int) -> list[tuple[int, Tensor]]:
    """Per sweep: the window's first position t and its inputs x (positions, batch, D)."""
    out = []
    for x, lam in spy.calls[:-1]:
        levels = lam.reshape(-1, batch)[:, 0]
        t = int((logsnrs - levels[0]).abs().argmin())
        torch.testing.assert_close(levels, logsnrs[t : t + len(levels)])
        out.append((t, x.reshape(len(levels), batch, -1)))
    return out


def _moved(a: Tensor, b: Tensor) -> float:
    """RMS per dimension of a − b for the worst example."""
    return float((a - b).square().mean(-1).amax().sqrt())


@pytest.mark.parametrize("tol", [1e-3, 1e-2])
@pytest.mark.parametrize("window", [None, 7])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_the_window_slides_past_the_converged_prefix_only(
    tol: float, window: int | None, scale: float
) -> None:
    # read off the sweeps: the window's next start t' is the last accepted position, so it must
    # have moved by at most tol in the sweep before (RMS per dimension of x, worst example),
    # unless the sweep could only take the one position that is exact after any sweep; the
    # position after it, the first one left unaccepted, must have moved by more than tol
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=2))
    nn.init.normal_(model.backbone.out.weight, std=scale)
    spy = Spy(model.eval())
    logsnrs = logsnr_grid("cosine", 30)
    x = (
        torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
        * torch.linspace(0.2, 3, 64)[:, None]
    )
    sample_picard(spy, x, logsnrs, tol=tol, window=window)
    sweeps = _sweeps(spy, logsnrs, 64)
    checked = 0
    for (t, xs), (t_next, xs_next) in zip(sweeps[:-1], sweeps[1:], strict=True):
        e = t + len(xs)
        assert t < t_next <= e
        if t_next > t + 1 and t_next < e:  # the new start is an accepted, converged position
            assert _moved(xs_next[0], xs[t_next - t]) <= tol + 1e-7
            checked += 1
        p = t_next + 1  # the first unaccepted position: seen before and after this sweep
        if t_next < e and p < e and p - t_next < len(xs_next):
            assert _moved(xs_next[p - t_next], xs[p - t]) > tol
            checked += 1
    assert checked >= 4


def test_positions_past_the_window_start_from_its_newest_value() -> None:
    # window 5 of 30: after a sweep over t..e−1 the positions past e (not yet in any window)
    # start from position e's new value y_e (x = α·y at each level)
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=2))
    nn.init.normal_(model.backbone.out.weight, std=0.5)
    spy = Spy(model.eval())
    logsnrs = logsnr_grid("cosine", 30)
    alpha = torch.sigmoid(logsnrs.double()).sqrt().float()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    sample_picard(spy, x, logsnrs, tol=1e-3, window=5)
    sweeps = _sweeps(spy, logsnrs, 16)
    grew = 0
    for (t, xs), (t_next, xs_next) in zip(sweeps[:-1], sweeps[1:], strict=True):
        e, e_next = t + len(xs), t_next + len(xs_next)
        if e_next > e + 1 and e >= t_next:
            y_e = xs_next[e - t_next] / alpha[e]
            for p in range(e + 1, e_next):
                torch.testing.assert_close(
                    xs_next[p - t_next] / alpha[p], y_e, rtol=1e-4, atol=1e-5
                )
            grew += 1
    assert grew >= 3
