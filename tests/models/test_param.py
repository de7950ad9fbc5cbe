import math

import pytest
import torch

from models.param import (
    EpsModel,
    add_noise,
    eps_to_score,
    eps_to_v,
    eps_to_x0,
    x0_to_eps,
)

SHAPES = [(64, 3), (16, 2, 4, 4)]


def _draws(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(shape, generator=g, dtype=torch.float64)
    lam = torch.empty(shape[0], dtype=torch.float64).uniform_(-10, 10, generator=g)
    return x0, eps, eps_hat, lam


def _per_example_sq(a: torch.Tensor) -> torch.Tensor:
    return a.square().flatten(1).sum(1)


@pytest.mark.parametrize("shape", SHAPES)
def test_add_noise_is_vp(shape: tuple[int, ...]) -> None:
    x0, eps, _, lam = _draws(shape)
    x = add_noise(x0, eps, lam)
    a2 = torch.sigmoid(lam).reshape(-1, *[1] * (len(shape) - 1))
    torch.testing.assert_close(x, a2.sqrt() * x0 + (1 - a2).sqrt() * eps)


@pytest.mark.parametrize("shape", SHAPES)
def test_roundtrips(shape: tuple[int, ...]) -> None:
    x0, eps, eps_hat, lam = _draws(shape)
    x = add_noise(x0, eps, lam)
    torch.testing.assert_close(eps_to_x0(x, eps, lam), x0)
    torch.testing.assert_close(x0_to_eps(x, x0, lam), eps)
    torch.testing.assert_close(x0_to_eps(x, eps_to_x0(x, eps_hat, lam), lam), eps_hat)


@pytest.mark.parametrize("shape", SHAPES)
def test_x0_error_identity(shape: tuple[int, ...]) -> None:
    # ‖x0 − x̂0‖² = ‖ε − ε̂‖²/SNR
    x0, eps, eps_hat, lam = _draws(shape)
    x = add_noise(x0, eps, lam)
    lhs = _per_example_sq(x0 - eps_to_x0(x, eps_hat, lam))
    rhs = _per_example_sq(eps - eps_hat) / lam.exp()
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_v_definition_and_mse_identity(shape: tuple[int, ...]) -> None:
    x0, eps, eps_hat, lam = _draws(shape)
    x = add_noise(x0, eps, lam)
    a, s = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    view = (-1,) + (1,) * (len(shape) - 1)
    v_true = a.reshape(view) * eps - s.reshape(view) * x0  # Salimans & Ho 2022
    torch.testing.assert_close(eps_to_v(x, eps, lam), v_true)
    # v-MSE = ε-MSE·(SNR + 1)/SNR
    lhs = _per_example_sq(v_true - eps_to_v(x, eps_hat, lam))
    snr = lam.exp()
    rhs = _per_example_sq(eps - eps_hat) * (snr + 1) / snr
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=0)


def test_score_of_gaussian() -> None:
    # x0 ~ N(0, v): x_λ ~ N(0, α²v + σ²), exact ε* = σ x/(α²v + σ²); score = −ε*/σ
    v = torch.tensor([0.3, 2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    lam = torch.empty(50, dtype=torch.float64).uniform_(-8, 8, generator=g)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64).requires_grad_()
    a2 = torch.sigmoid(lam)[:, None]
    var = a2 * v + (1 - a2)
    logp = torch.distributions.Normal(0.0, var.sqrt()).log_prob(x).sum()
    (score,) = torch.autograd.grad(logp, x)
    eps_star = (1 - a2).sqrt() * x.detach() / var
    torch.testing.assert_close(eps_to_score(x.detach(), eps_star, lam), score)


class _Recorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.seen.append(c_noise)
        return self.scale * x + c_noise.reshape(-1, *[1] * (x.ndim - 1))


@pytest.mark.parametrize("shape", SHAPES)
def test_eps_model_wrapper(shape: tuple[int, ...]) -> None:
    x0, eps, _, lam = _draws(shape)
    x = add_noise(x0, eps, lam).float()
    lam = lam.float()
    backbone = _Recorder()
    model = EpsModel(backbone)
    eps_hat = model(x, lam)
    torch.testing.assert_close(backbone.seen[-1], lam / 8)  # c_noise = λ/8
    torch.testing.assert_close(model.x0(x, lam), eps_to_x0(x, eps_hat, lam))
    torch.testing.assert_close(model.v(x, lam), eps_to_v(x, eps_hat, lam))
    torch.testing.assert_close(model.score(x, lam), eps_to_score(x, eps_hat, lam))
    scalar = model(x, torch.tensor(2.0))  # a 0-d level is broadcast to every example
    torch.testing.assert_close(scalar, model(x, torch.full((shape[0],), 2.0)))
    assert math.isclose(float(backbone.seen[-1][0]), 0.25)
