"""Example of a denoiser of your own: a diffusers ``UNet2DModel`` small enough for 8×8 digits on
the CPU, searched with ``--set net=python:models.diffusers_unet:unet2d``.

A factory is called as ``factory(shape, width=net.width, depth=net.depth)`` (0 = its own
default) and returns a ``torch.nn.Module`` that maps ``(x, noise)`` to a tensor of x's shape; it
declares what it predicts and how it takes the noise level as the attributes ``prediction`` and
``noise_input`` (models/external.py), or the config keys ``net.prediction`` / ``net.noise_input``
do. Needs the optional extra: ``pip install -e '.[diffusers]'``.
"""

from __future__ import annotations

from diffusers import UNet2DModel  # the [diffusers] extra: imported only by net=python:this


def unet2d(shape: tuple[int, ...], width: int = 0, depth: int = 0) -> UNet2DModel:
    """A UNet2DModel for (C, H, W) images: ``depth`` resolutions (default 2) of ``width``·2^i
    channels (default 16), one ResNet block per level, no attention outside the middle block.
    It predicts v from the diffusers-style timestep 1000·t (t the rectified-flow time)."""
    if len(shape) != 3:
        raise ValueError(f"unet2d is for images (C, H, W); got examples of shape {tuple(shape)}")
    channels, size = shape[0], shape[-1]
    width, levels = width or 16, depth or 2
    net = UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=tuple(width * 2**i for i in range(levels)),
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        norm_num_groups=min(8, width),
        attention_head_dim=width,
    )
    net.prediction = "v"
    net.noise_input = "timestep"
    return net
