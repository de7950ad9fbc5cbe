import math

import pytest
import torch

from models.analytic import GaussianMixture
from models.losses import DenoiseLoss
from models.schedules import CosineDensity, EDMDensity, alpha_sigma
from models.weighting import WEIGHTINGS, Constant, LogVarHead, Normalized, Weighting

N = 20000
DENSITY = CosineDensity()


def _weighting(name: str) -> Weighting:
    cls = WEIGHTINGS[name]
    return cls(density=DENSITY) if name == "sigmoid" else cls()


def _make_draws() -> dict[str, torch.Tensor]:
    """Fixed x0, ε, λ draws from a full-covariance 2-D mixture and the exact ε* at x_λ."""
    gm = GaussianMixture(
        [0.5, 0.3, 0.2],
        [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.5]],
        [[[0.3, 0.1], [0.1, 0.2]], [[0.1, -0.05], [-0.05, 0.4]], [[0.2, 0.0], [0.0, 0.05]]],
    )
    g = torch.Generator().manual_seed(0)
    x0 = gm.sample(N, g)
    eps = torch.randn(N, 2, generator=g)
    lam = DENSITY.sample(N, g)
    a, s = alpha_sigma(lam)
    x = a[:, None] * x0 + s[:, None] * eps
    b, c = torch.randn(2, 2, generator=g), torch.randn(2, generator=g)
    return {
        "x0": x0,
        "eps": eps,
        "lam": lam,
        "x": x,
        "eps_star": gm.eps_star(x, lam),
        "b": b,
        "c": c,
    }


@pytest.fixture(scope="module")
def draws() -> dict[str, torch.Tensor]:
    return _make_draws()


def _delta(d: dict[str, torch.Tensor], x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """A fixed perturbation δ(x, λ): a function of the model's inputs only, never of ε."""
    return 0.5 * torch.tanh(x @ d["b"] + d["c"]) * (1 + 0.5 * torch.sin(lam))[:, None]


def _model(d: dict[str, torch.Tensor], eps_hat: torch.Tensor, delta: bool):
    def model(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        # the loss must noise x0 as α x0 + σ ε at the λ it was given
        torch.testing.assert_close(x, d["x"])
        assert torch.equal(lam, d["lam"])
        return eps_hat + _delta(d, x, lam) if delta else eps_hat

    return model


def _decomposition(loss: DenoiseLoss, d: dict[str, torch.Tensor], eps_hat: torch.Tensor):
    """loss(ε̂ + δ) − loss(ε̂) = w'(‖δ‖² + 2δ·(ε̂ − ε))/D with w' the multiplier of the mse.

    For ε̂ = ε* the cross term has mean zero (E[ε | x_λ] = ε*), so the difference estimates
    E[w'‖δ‖²]/D ≥ 0 with common random numbers. Returns (diff, signal) per example.
    """
    base = loss.core(_model(d, eps_hat, False), d["x0"], d["eps"], d["lam"])
    pert = loss.core(_model(d, eps_hat, True), d["x0"], d["eps"], d["lam"])
    w = loss.weighting(d["lam"])
    if loss.logvar_head is not None:
        w = w * torch.exp(-loss.logvar_head(d["lam"]))
    signal = w * _delta(d, d["x"], d["lam"]).square().mean(1)
    return (pert - base).double().detach(), signal.double().detach()


def _z(v: torch.Tensor) -> float:
    return float(v.mean() / (v.std() / math.sqrt(v.numel())))


def _head() -> LogVarHead:
    head = LogVarHead()
    with torch.no_grad():
        head.linear.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        head.linear.bias.fill_(0.2)
    return head


CASES = [(name, False, False) for name in WEIGHTINGS] + [
    ("edm", False, True),  # EDM2: w/e^u · mse + u with a non-trivial u(λ)
    ("debiased", True, False),
    ("min_snr", True, True),
]


@pytest.mark.parametrize(("name", "normalize", "head"), CASES)
def test_exact_eps_beats_perturbations(draws: dict, name: str, normalize: bool, head: bool) -> None:
    w = _weighting(name)
    if normalize:
        w = Normalized(w, DENSITY)
    loss = DenoiseLoss(w, DENSITY, logvar_head=_head() if head else None)
    diff, signal = _decomposition(loss, draws, draws["eps_star"])
    assert _z(diff) > 5.0  # the perturbed predictor loses, by a clear margin
    assert abs(_z(diff - signal)) < 4.0  # and by E[w‖δ‖²]/D: the cross term averages out
    assert float(diff.mean()) == pytest.approx(float(signal.mean()), rel=0.1)


def test_decomposition_detects_a_suboptimal_predictor(draws: dict) -> None:
    # power check: a biased predictor ε* + 0.2 is not E[ε | x_λ], so the cross term no longer
    # averages out and the same statistic rejects it
    biased = draws["eps_star"] + 0.2
    diff, signal = _decomposition(DenoiseLoss(Constant(), DENSITY), draws, biased)
    assert abs(_z(diff - signal)) > 8.0


def test_core_formula_weight_correction_and_head() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps, corr = (torch.randn(6, 3, 4, 4, generator=g) for _ in range(3))
    lam = torch.linspace(-6, 6, 6)
    weight = torch.rand(6, generator=g)
    net = torch.nn.Conv2d(3, 3, 1)
    model = lambda x, lv: net(x) * (1 + lv[:, None, None, None] / 10)  # noqa: E731
    w = WEIGHTINGS["min_snr"](gamma=2.0)
    a, s = alpha_sigma(lam)
    x = a[:, None, None, None] * x0 + s[:, None, None, None] * eps
    mse = (model(x, lam) - (eps - corr)).square().mean((1, 2, 3))
    loss = DenoiseLoss(w, DENSITY)
    got = loss.core(model, x0, eps, lam, weight=weight, eps_correction=corr)
    torch.testing.assert_close(got, w(lam) * weight * mse)
    mse0 = (model(x, lam) - eps).square().mean((1, 2, 3))
    torch.testing.assert_close(loss.core(model, x0, eps, lam), w(lam) * mse0)
    # EDM2 head: w/e^u · mse + u; a zero-initialised head leaves the loss unchanged
    head = LogVarHead()
    with_head = DenoiseLoss(w, DENSITY, logvar_head=head)
    torch.testing.assert_close(with_head.core(model, x0, eps, lam), w(lam) * mse0)
    with torch.no_grad():
        head.linear.bias.fill_(0.7)
    expected = w(lam) * math.exp(-0.7) * mse0 + 0.7
    torch.testing.assert_close(with_head.core(model, x0, eps, lam), expected)
    # gradients reach both the model and the head
    with_head.core(model, x0, eps, lam).mean().backward()
    assert net.weight.grad.abs().sum() > 0 and head.linear.bias.grad.abs() > 0


def test_head_minimiser_is_log_expected_weighted_mse() -> None:
    # for fixed λ, E[w e^{−u} m + u] is minimised at e^u = E[w m] (EDM2 Eq. 21)
    w, m = 3.0, torch.rand(1000, generator=torch.Generator().manual_seed(0))
    u = torch.tensor(0.0, requires_grad=True)
    opt = torch.optim.SGD([u], lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        (w * torch.exp(-u) * m + u).mean().backward()
        opt.step()
    assert float(u.detach()) == pytest.approx(math.log(w * float(m.mean())), abs=1e-4)


def test_call_draws_logsnr_then_eps_from_the_generator() -> None:
    density = EDMDensity()
    seen = {}

    def model(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        seen["x"], seen["lam"] = x, lam
        return torch.zeros_like(x)

    x0 = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    loss = DenoiseLoss(Constant(), density)
    out = loss(model, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    lam = density.sample(64, g)
    eps = torch.randn(x0.shape, generator=g)
    assert out.shape == (64,)
    torch.testing.assert_close(seen["lam"], lam)
    torch.testing.assert_close(out, eps.square().mean((1, 2, 3)))  # ε̂ = 0: loss = mean ε²
    torch.testing.assert_close(loss(model, x0, torch.Generator().manual_seed(3)), out)
    assert not torch.equal(loss(model, x0, torch.Generator().manual_seed(4)), out)
