"""VQModel: the Emu3 vision tokenizer. Pixels in [-1, 1] <-> codes (VQ codebook indices).

    codes = vq.encode_image(pixels)      # (B, 3, H, W) -> (B, H/8, W/8)
    pixels = vq.decode_image(codes)      # (B, h, w) -> (B, 3, 8h, 8w)
    codes = vq.encode_video(frames)      # (B, T, 3, H, W) -> (B, T/4, H/8, W/8)
    frames = vq.decode_video(codes)      # (B, t, h, w) -> (B, 4t, 3, 8h, 8w)

An image is encoded as a clip of `temporal_downsample_factor` copies of itself (one latent frame)
and decoded as the first frame of the decoded clip, as the official code does (spec 2.5). A video
of T frames is encoded jointly: the causal temporal convolutions compress every 4 frames into one
latent frame. `reconstruct` is the training forward (straight-through, losses).

Shapes: B batch, T frames, C channels, H/W pixels, h/w latent cells, D code width.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emu3.vision import tiles
from emu3.vision.blocks import (
    AttnBlock,
    CausalConv3d,
    Downsample,
    ResBlock,
    SpatialNorm,
    TemporalDownsample,
    TemporalResBlock,
    TemporalUpsample,
    Upsample,
    group_norm,
    swish,
)
from emu3.vision.config import VQConfig
from emu3.vision.quantizer import VectorQuantizer


class _Mid(nn.Module):
    def __init__(self, channels: int, zq_channels: int | None, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResBlock(channels, channels, zq_channels=zq_channels, dropout=dropout)
        self.attn_1 = AttnBlock(channels, zq_channels=zq_channels)
        self.block_2 = ResBlock(channels, channels, zq_channels=zq_channels, dropout=dropout)

    def forward(self, x: Tensor, zq: Tensor | None = None) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x, zq), zq), zq)


class _Level(nn.Module):
    """One resolution level: res blocks (each optionally followed by attention), then a resampler."""

    def __init__(self, blocks: list[ResBlock], attns: list[AttnBlock], resample: nn.Module | None, name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        if resample is not None:
            self.add_module(name, resample)
        self.resample_name = name if resample is not None else None

    def forward(self, x: Tensor, zq: Tensor | None = None) -> Tensor:
        for i, block in enumerate(self.block):
            x = block(x, zq)
            if len(self.attn):
                x = self.attn[i](x, zq)
        return x if self.resample_name is None else getattr(self, self.resample_name)(x)


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        widths_in = [cfg.ch] + [cfg.ch * m for m in cfg.ch_mult]
        levels = []
        for i, mult in enumerate(cfg.ch_mult):
            c_in, c_out = widths_in[i], cfg.ch * mult
            blocks = [
                ResBlock(c_in if j == 0 else c_out, c_out, dropout=cfg.dropout) for j in range(cfg.num_res_blocks)
            ]
            attns = [AttnBlock(c_out) for _ in range(cfg.num_res_blocks)] if i in cfg.attn_levels else []
            last = i == len(cfg.ch_mult) - 1
            levels.append(_Level(blocks, attns, None if last else Downsample(c_out), "downsample"))
        self.down = nn.ModuleList(levels)
        self.mid = _Mid(cfg.attn_width, None, cfg.dropout)
        self.norm_out = group_norm(cfg.attn_width)
        self.conv_out = nn.Conv2d(cfg.attn_width, cfg.z_channels, 3, padding=1)
        n_time = cfg.temporal_downsample_factor.bit_length() - 1
        self.time_conv = nn.ModuleList(TemporalDownsample(cfg.z_channels) for _ in range(n_time))
        self.time_res_stack = nn.ModuleList(TemporalResBlock(cfg.z_channels, cfg.dropout)
                                            for _ in range(cfg.num_res_blocks))  # fmt: skip

    def spatial(self, frames: Tensor) -> Tensor:
        """Per-frame part: (N, 3, H, W) -> (N, z, h, w)."""
        x = self.conv_in(frames)
        for level in self.down:
            x = level(x)
        return self.conv_out(swish(self.norm_out(self.mid(x))))

    def temporal(self, x: Tensor) -> Tensor:
        """(B, z, T, h, w) -> (B, z, T/4, h, w)."""
        for conv in self.time_conv:
            x = swish(conv(x))
        for block in self.time_res_stack:
            x = block(x)
        return x

    def forward(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, z, T/4, h, w) latents."""
        b, t = frames.shape[:2]
        x = self.spatial(frames.flatten(0, 1))  # (B*T, z, h, w)
        return self.temporal(x.view(b, t, *x.shape[1:]).transpose(1, 2))

    def forward_still(self, pixels: Tensor, frames: int) -> Tensor:
        """An image as a clip of `frames` identical frames, computing the per-frame part once."""
        x = self.spatial(pixels)  # (B, z, h, w)
        return self.temporal(x[:, :, None].expand(-1, -1, frames, -1, -1))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.time_res_stack = nn.ModuleList(TemporalResBlock(cfg.z_channels, cfg.dropout)
                                            for _ in range(cfg.num_res_blocks))  # fmt: skip
        n_time = cfg.temporal_downsample_factor.bit_length() - 1
        self.time_conv = nn.ModuleList(TemporalUpsample(cfg.z_channels) for _ in range(n_time))
        self.conv_in = nn.Conv2d(cfg.z_channels, cfg.attn_width, 3, padding=1)
        self.mid = _Mid(cfg.attn_width, cfg.embed_dim, cfg.dropout)
        levels: list[_Level] = []
        c_in = cfg.attn_width
        for i in reversed(range(len(cfg.ch_mult))):
            c_out = cfg.ch * cfg.ch_mult[i]
            blocks = [ResBlock(c_in if j == 0 else c_out, c_out, zq_channels=cfg.embed_dim, dropout=cfg.dropout)
                      for j in range(cfg.num_res_blocks + 1)]  # fmt: skip
            attns = [AttnBlock(c_out, zq_channels=cfg.embed_dim) for _ in blocks] if i in cfg.attn_levels else []
            levels.insert(0, _Level(blocks, attns, Upsample(c_out) if i > 0 else None, "upsample"))
            c_in = c_out
        self.up = nn.ModuleList(levels)  # up[i] is level i; run from the deepest level up
        self.norm_out = SpatialNorm(cfg.embed_dim, cfg.ch * cfg.ch_mult[0])
        self.conv_out = nn.Conv2d(cfg.ch * cfg.ch_mult[0], cfg.out_channels, 3, padding=1)

    def temporal(self, z: Tensor, zq: Tensor) -> tuple[Tensor, Tensor]:
        """Both (B, C, t, h, w) -> both (B, C, 4t, h, w); the temporal layers are shared by z and zq."""
        both = torch.cat([z, zq])
        for block in self.time_res_stack:
            both = block(both)
        for conv in self.time_conv:
            both = swish(conv(both))
        return both.chunk(2)

    def spatial(self, z: Tensor, zq: Tensor) -> Tensor:
        """Per-frame part: (N, C, h, w) latent and conditioning -> (N, 3, H, W)."""
        x = self.mid(self.conv_in(z), zq)
        for level in reversed(self.up):
            x = level(x, zq)
        return self.conv_out(swish(self.norm_out(x, zq)))

    def forward(self, z: Tensor, zq: Tensor, first_frame_only: bool = False) -> Tensor:
        """z = post_quant_conv(zq), both (B, C, t, h, w) -> frames (B, T, 3, H, W), T = 4t
        (T = 1 with `first_frame_only`, which is all an image needs)."""
        z, zq = self.temporal(z, zq)
        if first_frame_only:
            z, zq = z[:, :, :1], zq[:, :, :1]
        b, t = z.shape[0], z.shape[2]
        frames = self.spatial(z.transpose(1, 2).flatten(0, 1), zq.transpose(1, 2).flatten(0, 1))
        return frames.view(b, t, *frames.shape[1:])


@dataclass
class Reconstruction:
    pixels: Tensor  # (B, T, 3, H, W) decoded frames
    codes: Tensor  # (B, t, h, w)
    codebook_loss: Tensor
    commitment_loss: Tensor
    latents: Tensor | None = None  # (B, t, h, w, D) before quantisation (for regularisers)


def own_precision(method: Callable[[VQModel, Tensor], Tensor]) -> Callable[[VQModel, Tensor], Tensor]:
    """Run an encode / decode method in the model's own dtype, whatever autocast the caller has on. The
    codes are defined by that arithmetic: under a bf16 autocast, 55% of the codes of the demo's 72 px
    scenes changed (fp32 tokenizer), and a decoder trained on the fp32 codes read those images worse
    (colour binding 0.575 against 0.895). Training (`reconstruct`) keeps the caller's autocast."""

    @functools.wraps(method)
    def run(self: VQModel, x: Tensor) -> Tensor:
        with torch.autocast(self.device.type, enabled=False):
            return method(self, x)

    return run


class VQModel(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.codebook_size, cfg.embed_dim)
        self.quant_conv = CausalConv3d(cfg.z_channels, cfg.embed_dim, (3, 1, 1))
        self.post_quant_conv = CausalConv3d(cfg.embed_dim, cfg.z_channels, (3, 1, 1))

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.quant_conv.conv.weight.device

    # ------------------------------------------------------------ codes

    def _latents(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, t, h, w, D) pre-quantisation vectors."""
        self._check_pixels(frames, self.cfg.video_pixel_multiple)
        frames, grid = self._split(frames.to(self.dtype), self.cfg.video_tile_size)
        z = self.quant_conv(self.encoder(frames))  # (B, D, t, h, w)
        return self._merge(z, grid).permute(0, 2, 3, 4, 1)

    def _image_latents(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 1, h, w, D): the image as a clip of identical frames (spec 2.5)."""
        self._check_pixels(pixels, self.cfg.pixel_multiple)
        pixels, grid = self._split(pixels.to(self.dtype), self.cfg.tile_size)
        z = self.encoder.forward_still(pixels, self.cfg.temporal_downsample_factor)
        return self._merge(self.quant_conv(z), grid).permute(0, 2, 3, 4, 1)

    @torch.no_grad()
    @own_precision
    def encode_video(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) pixels in [-1, 1], T a multiple of the temporal factor -> (B, T/4, h, w) codes."""
        if frames.ndim != 5:
            raise ValueError(f"encode_video expects (B, T, 3, H, W) frames, got shape {tuple(frames.shape)}")
        if frames.shape[1] % self.cfg.temporal_downsample_factor:
            raise ValueError(
                f"a video needs a multiple of {self.cfg.temporal_downsample_factor} frames, got {frames.shape[1]}"
            )
        return self.quantize.nearest(self._latents(frames))

    @torch.no_grad()
    @own_precision
    def encode_image(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) pixels in [-1, 1] -> (B, H/8, W/8) codes."""
        if pixels.ndim != 4:
            raise ValueError(f"encode_image expects (B, 3, H, W) pixels, got shape {tuple(pixels.shape)}")
        return self.quantize.nearest(self._image_latents(pixels))[:, 0]

    @torch.no_grad()
    @own_precision
    def decode_video(self, codes: Tensor) -> Tensor:
        """(B, t, h, w) codes -> (B, 4t, 3, 8h, 8w) pixels in about [-1, 1]."""
        if codes.ndim != 4:
            raise ValueError(f"decode_video expects (B, t, h, w) codes, got shape {tuple(codes.shape)}")
        return self._decode(self.quantize.lookup(codes.long()), self.cfg.video_tile_size)

    @torch.no_grad()
    @own_precision
    def decode_image(self, codes: Tensor) -> Tensor:
        """(B, h, w) codes -> (B, 3, 8h, 8w) pixels."""
        if codes.ndim != 3:
            raise ValueError(f"decode_image expects (B, h, w) codes, got shape {tuple(codes.shape)}")
        return self._decode(self.quantize.lookup(codes.long())[:, None], self.cfg.tile_size, first_frame_only=True)[
            :, 0
        ]

    def _decode(self, zq: Tensor, tile: int, first_frame_only: bool = False) -> Tensor:
        """(B, t, h, w, D) code vectors -> (B, T, 3, H, W) (T = 1 with `first_frame_only`), in `tile` px tiles."""
        zq = zq.permute(0, 4, 1, 2, 3).to(self.dtype)  # (B, D, t, h, w)
        zq, grid = self._split(zq, tile // self.cfg.spatial_factor)
        return self._merge(self.decoder(self.post_quant_conv(zq), zq, first_frame_only), grid)

    @staticmethod
    def _split(x: Tensor, tile: int) -> tuple[Tensor, tuple[int, int] | None]:
        """Tiles of the last two axes as extra batch items (`cfg.tile_size`); unchanged when tile is 0."""
        return (x, None) if tile == 0 else tiles.split(x, tile, tile)

    @staticmethod
    def _merge(x: Tensor, grid: tuple[int, int] | None) -> Tensor:
        return x if grid is None else tiles.merge(x, grid)

    # ------------------------------------------------------------ training

    def reconstruct(self, frames: Tensor) -> Reconstruction:
        """Training forward for clips: encode, quantise with straight-through gradients, decode."""
        q = self.quantize.quantize(self._latents(frames))
        return Reconstruction(
            self._decode(q.z_q, self.cfg.video_tile_size), q.codes, q.codebook_loss, q.commitment_loss
        )

    def reconstruct_image(self, pixels: Tensor) -> Reconstruction:
        """Training forward for images, computed as encode_image / decode_image do (one frame's work)."""
        z = self._image_latents(pixels)
        q = self.quantize.quantize(z)
        return Reconstruction(self._decode(q.z_q, self.cfg.tile_size, first_frame_only=True), q.codes, q.codebook_loss,
                              q.commitment_loss, z)  # fmt: skip

    def _check_pixels(self, frames: Tensor, m: int) -> None:
        """Sides of at least one latent cell, multiples of `m` (one cell, or the tile the frames are split in)."""
        h, w = frames.shape[-2:]
        f = self.cfg.spatial_factor
        if h < f or w < f:
            raise ValueError(f"images must be at least {f}x{f} pixels (one latent cell), got {h}x{w}")
        if h % m or w % m:
            tiled = f" (this tokenizer works in {m}x{m} pixel tiles)" if m != f else ""
            raise ValueError(
                f"image sides must be multiples of {m}{tiled}, got {h}x{w}; resize first (image_io.smart_resize)"
            )


def cast_vq(model: VQModel, dtype: torch.dtype) -> VQModel:
    """Cast to `dtype`, keeping BatchNorm in fp32 (bf16 batch statistics change codes, spec 8.4)."""
    model.to(dtype)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.float()
    return model


def build_vq(cfg: VQConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> VQModel:
    """A freshly initialised VQ (seeded)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = VQModel(cfg)
    return cast_vq(model, dtype)
