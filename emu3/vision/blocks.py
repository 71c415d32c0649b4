"""Building blocks of the Emu3 vision tokenizer (spec 2.2-2.4).

2-D parts (per frame): ResBlock (GroupNorm or SpatialNorm, swish, 3x3 convs, 1x1 shortcut),
AttnBlock (one head over all positions, linear q/k/v/out), Downsample (pad right/bottom, stride-2
conv), Upsample (nearest x2, conv). SpatialNorm (MoVQ) modulates a GroupNorm by the quantised
latent. 3-D parts (over time, on the latent): CausalConv3d (two frames of zero padding in front,
none behind), TemporalDownsample / TemporalUpsample, TemporalResBlock (BatchNorm3d).

Shapes: N = batch x frames for 2-D parts; B batch, C channels, T frames, H/W pixels or latent cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class SpatialNorm(nn.Module):
    """GroupNorm(x) * conv_y(zq) + conv_b(zq), zq resized (nearest) to x's grid."""

    def __init__(self, zq_channels: int, channels: int) -> None:
        super().__init__()
        self.norm_layer = group_norm(channels)
        self.conv_y = nn.Conv2d(zq_channels, channels, 1)
        self.conv_b = nn.Conv2d(zq_channels, channels, 1)

    def forward(self, x: Tensor, zq: Tensor) -> Tensor:
        zq = F.interpolate(zq, size=x.shape[-2:], mode="nearest")
        return self.norm_layer(x) * self.conv_y(zq) + self.conv_b(zq)


def _norm(channels: int, zq_channels: int | None) -> nn.Module:
    return group_norm(channels) if zq_channels is None else SpatialNorm(zq_channels, channels)


def _apply_norm(norm: nn.Module, x: Tensor, zq: Tensor | None) -> Tensor:
    return norm(x, zq) if isinstance(norm, SpatialNorm) else norm(x)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, *, zq_channels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, zq_channels)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out, zq_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, zq: Tensor | None = None) -> Tensor:
        h = self.conv1(swish(_apply_norm(self.norm1, x, zq)))
        h = self.conv2(self.dropout(swish(_apply_norm(self.norm2, h, zq))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with a residual connection."""

    def __init__(self, channels: int, *, zq_channels: int | None = None) -> None:
        super().__init__()
        self.norm = _norm(channels, zq_channels)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor, zq: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        t = _apply_norm(self.norm, x, zq).flatten(2).transpose(1, 2)  # (N, H*W, C)
        out = F.scaled_dot_product_attention(self.q(t)[:, None], self.k(t)[:, None], self.v(t)[:, None])[:, 0]
        out = self.proj_out(out).transpose(1, 2).reshape(n, c, h, w)
        return x + out


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric: one extra row/column on the far side


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class CausalConv3d(nn.Module):
    """Conv3d that sees only the current and earlier frames: 2 frames of zero padding in front (always
    2, whatever the kernel, as the official code), "same" spatial padding split ceil-left/floor-right."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        pad_h, pad_w = kernel[1] - stride[1], kernel[2] - stride[2]
        self.padding = (pad_w - pad_w // 2, pad_w // 2, pad_h - pad_h // 2, pad_h // 2, 2, 0)
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W)
        return self.conv(F.pad(x, self.padding))


class TemporalDownsample(nn.Module):
    """Halve T: causal conv with kernel (4, 3, 3), stride (2, 1, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (4, 3, 3), (2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class TemporalUpsample(nn.Module):
    """Double T (nearest), then a causal 3x3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (3, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        x = x.permute(0, 1, 3, 4, 2).reshape(b, c * h * w, t)  # interpolate along T only
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = x.reshape(b, c, h, w, 2 * t).permute(0, 1, 4, 2, 3)
        return self.conv(x.contiguous())


class TemporalResBlock(nn.Module):
    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(channels)
        self.conv1 = CausalConv3d(channels, channels, (3, 3, 3))
        self.norm2 = nn.BatchNorm3d(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(channels, channels, (3, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        # NOTE: BatchNorm3d stays in fp32 even in a bf16 model (spec 8.4: half-precision BN breaks codes).
        h = self.conv1(swish(_bn(self.norm1, x)))
        h = self.conv2(self.dropout(swish(_bn(self.norm2, h))))
        return x + h


def _bn(norm: nn.BatchNorm3d, x: Tensor) -> Tensor:
    return norm(x.float()).to(x.dtype)
