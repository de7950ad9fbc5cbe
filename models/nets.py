"""Backbones ``net(x, c_noise) -> out`` (same shape as x); they know nothing of the noise
parameterisation (``models.param.EpsModel`` wraps them). Small and fast on CPU."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.registry import Registry

# Backbones by data kind: "auto" in the configuration picks the one registered for the data's
# kind; an argument whose config value is 0 takes the entry's `zero` default.
NETS: Registry[type[nn.Module]] = Registry("net")


class FourierEmbedding(nn.Module):
    """Sinusoidal features of the scalar c_noise (Vaswani et al. 2017 / DDPM), then a 2-layer MLP.

    Frequencies are geometric in [1, 100] so that c_noise = λ/8 in [−2, 2] is resolved to ~0.01.
    """

    def __init__(self, emb_dim: int, n_freqs: int = 32, max_freq: float = 100.0) -> None:
        super().__init__()
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), n_freqs))
        self.register_buffer("freqs", freqs)
        self.mlp = nn.Sequential(
            nn.Linear(2 * n_freqs + 1, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

    def forward(self, c_noise: Tensor) -> Tensor:
        arg = c_noise[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([arg.sin(), arg.cos(), c_noise[:, None]], dim=1))


class _MLPBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        r = self.fc1(F.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc2(F.silu(r))


@NETS.register(
    "mlp",
    params={"width": "net.width", "depth": "net.depth"},
    kind="lowdim",
    zero={"width": 256, "depth": 3},
)
class MLP(nn.Module):
    """Residual MLP for (B, D) data: forward(x: (B, D), c_noise: (B,)) -> (B, D).

    Args:
        dim: data dimension D.
        width: hidden width.
        depth: number of residual blocks.
        emb_dim: width of the noise embedding.
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 3, emb_dim: int = 64) -> None:
        super().__init__()
        self.embed = FourierEmbedding(emb_dim)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_MLPBlock(width, emb_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)  # start as the zero predictor (EDM/ADM zero-init)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        emb = F.silu(self.embed(c_noise))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm(h)))


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, ch), ch)


class _ResBlock(nn.Module):
    """ADM-style residual block; the noise embedding is added after the first conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over pixels (used only at the coarsest resolution)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, hw, c)
        return x + self.proj(a.transpose(1, 2).reshape(b, c, h, w))


@NETS.register(
    "unet",
    params={"width": "net.width", "levels": "net.depth"},
    kind="image",
    zero={"width": 32, "levels": 2},
)
class UNet(nn.Module):
    """Small U-Net for (B, C, H, W) images, 8x8 up to 32x32: forward(x, c_noise: (B,)) -> x.shape.

    Ronneberger et al. 2015 / DDPM layout kept lean for CPU: ``res_blocks`` residual blocks per
    level on each side with a skip connection from each down block to its mirror up block,
    stride-2 conv down, 2x2 transposed conv up, one residual block (+ attention) in the middle.
    Channels double per level (width·2^i); H and W must be divisible by 2^(levels−1).

    Args:
        channels: image channels C.
        width: channels at the finest level.
        levels: number of resolutions.
        res_blocks: residual blocks per level and side.
        emb_dim: width of the noise embedding.
        attention: add a self-attention block at the coarsest resolution.
    """

    def __init__(
        self,
        channels: int = 1,
        width: int = 32,
        levels: int = 2,
        res_blocks: int = 1,
        emb_dim: int = 64,
        attention: bool = True,
    ) -> None:
        super().__init__()
        if levels < 1 or res_blocks < 1:
            raise ValueError(f"need levels >= 1 and res_blocks >= 1, got {levels}, {res_blocks}")
        self.levels = levels
        chs = [width * 2**i for i in range(levels)]
        self.embed = FourierEmbedding(emb_dim)
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skip_chs, ch = [], width
        for i, c in enumerate(chs):
            blocks = nn.ModuleList()
            for _ in range(res_blocks):
                blocks.append(_ResBlock(ch, c, emb_dim))
                ch = c
                skip_chs.append(ch)
            self.down.append(blocks)
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = _ResBlock(ch, ch, emb_dim)
        self.attn = _Attention(ch) if attention else nn.Identity()

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(res_blocks):
                blocks.append(_ResBlock(ch + skip_chs.pop(), chs[i], emb_dim))
                ch = chs[i]
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.ConvTranspose2d(ch, chs[i - 1], 2, stride=2))
                ch = chs[i - 1]
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # zero-init output (ADM / EDM)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        f = 2 ** (self.levels - 1)
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"image side {tuple(x.shape[-2:])} not divisible by {f}")
        emb = F.silu(self.embed(c_noise))
        h = self.conv_in(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](h)
        h = self.attn(self.mid(h, emb))
        for j, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if j < self.levels - 1:
                h = self.upsample[j](h)
        return self.conv_out(F.silu(self.norm_out(h)))
