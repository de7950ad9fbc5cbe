import pytest
import torch

from models.nets import MLP, NETS, UNet


def _randomise_output(net: torch.nn.Module) -> None:
    """The output layer is zero-initialised; give it weights so the output is informative."""
    out = net.out if isinstance(net, MLP) else net.conv_out
    with torch.no_grad():
        out.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))


def test_registry() -> None:
    assert {"mlp": MLP, "unet": UNet} == dict(NETS.items())


@pytest.mark.parametrize("dim", [1, 2, 7])
def test_mlp_shape_and_zero_init(dim: int) -> None:
    torch.manual_seed(0)
    net = MLP(dim, width=64, depth=2)
    x = torch.randn(5, dim)
    y = net(x, torch.randn(5))
    assert y.shape == (5, dim) and y.dtype == torch.float32
    assert torch.equal(y, torch.zeros_like(y))  # zero-initialised final layer


@pytest.mark.parametrize(("side", "channels"), [(8, 1), (8, 3), (16, 1), (16, 3), (32, 1), (32, 3)])
def test_unet_shapes(side: int, channels: int) -> None:
    torch.manual_seed(0)
    net = UNet(channels=channels, width=16, levels=3 if side > 8 else 2)
    x = torch.randn(2, channels, side, side)
    y = net(x, torch.randn(2))
    assert y.shape == x.shape
    assert torch.equal(y, torch.zeros_like(y))  # zero-initialised final layer
    _randomise_output(net)
    assert net(x, torch.randn(2)).abs().sum() > 0


def test_unet_default_and_options() -> None:
    torch.manual_seed(0)
    for net in (UNet(), UNet(res_blocks=2, attention=False), UNet(levels=1)):
        x = torch.randn(3, 1, 8, 8)
        assert net(x, torch.zeros(3)).shape == x.shape
    with pytest.raises(ValueError, match="divisible"):
        UNet(levels=3)(torch.randn(1, 1, 6, 6), torch.zeros(1))


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_output_depends_on_c_noise(kind: str) -> None:
    torch.manual_seed(0)
    net = MLP(3, width=32) if kind == "mlp" else UNet(channels=1, width=16)
    _randomise_output(net)
    x = torch.randn(4, 3) if kind == "mlp" else torch.randn(4, 1, 8, 8)
    x = x[:1].expand_as(x).contiguous()  # same input, different noise levels
    c = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    y = net(x, c).flatten(1)
    for i in range(3):
        assert (y[i] - y[i + 1]).abs().max() > 1e-4
    # and the examples do not leak into each other
    torch.testing.assert_close(net(x[:2], c[:2]), net(x, c)[:2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_gradients_reach_every_parameter(kind: str) -> None:
    torch.manual_seed(0)
    net = MLP(2, width=32) if kind == "mlp" else UNet(channels=3, width=16)
    x = torch.randn(8, 2) if kind == "mlp" else torch.randn(8, 3, 8, 8)
    target = torch.randn_like(x)
    c = torch.randn(8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):  # step 1 moves the zero-initialised output layer; step 2 reaches all
        opt.zero_grad()
        loss = (net(x, c) - target).square().mean()
        loss.backward()
        opt.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name
