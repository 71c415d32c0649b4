"""VQConfig: the shape of the Emu3 vision tokenizer (a MoVQGAN-style VQ with temporal layers).

Released values from BAAI's `Emu3-VisionTokenizer/config.json` (spec 2.1): ch 256, ch_mult
(1, 2, 2, 4) -> 8x spatial compression, 4x temporal, codebook 32768 x 4, attention at level 3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class VQConfig:
    codebook_size: int = 32768
    embed_dim: int = 4  # code vector width
    z_channels: int = 4  # latent channels between encoder and quantizer
    in_channels: int = 3
    out_channels: int = 3
    ch: int = 256
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (3,)  # level indices with attention (official `attn_resolutions`)
    temporal_downsample_factor: int = 4
    dropout: float = 0.0
    # Ours, not in the released configs: > 0 encodes and decodes each tile_size x tile_size pixel tile
    # on its own, so that a code depends only on its tile's pixels (see emu3/vision/tiles.py). 0: the
    # whole image at once, as the official tokenizer does. A multiple of the spatial factor.
    tile_size: int = 0
    # Ours: False tiles images only and encodes videos whole-frame. A moving object crosses tile edges,
    # and a tiled tokenizer loses it there (the shipped one finds it in under 60% of frames even
    # chunk by chunk), while a still scene on the world's 3x3 layout never meets an edge.
    tile_videos: bool = True

    def __post_init__(self) -> None:
        widths = [self.ch * m for m in self.ch_mult]
        if any(w % 32 for w in widths):
            raise ValueError(f"every level width (ch * ch_mult = {widths}) must be a multiple of 32 (GroupNorm)")
        if self.temporal_downsample_factor < 1 or self.temporal_downsample_factor & (
            self.temporal_downsample_factor - 1
        ):
            raise ValueError(
                f"temporal_downsample_factor must be a power of two, got {self.temporal_downsample_factor}"
            )
        if any(not 0 <= a < len(self.ch_mult) for a in self.attn_levels):
            raise ValueError(f"attn_levels {self.attn_levels} must index ch_mult levels 0..{len(self.ch_mult) - 1}")
        if self.codebook_size <= 0 or self.embed_dim <= 0 or self.z_channels <= 0 or self.num_res_blocks <= 0:
            raise ValueError(f"sizes must be positive: {self}")
        if self.tile_size < 0 or self.tile_size % self.spatial_factor:
            raise ValueError(
                f"tile_size must be 0 or a positive multiple of the spatial factor {self.spatial_factor}, "
                f"got {self.tile_size}"
            )

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def pixel_multiple(self) -> int:
        """What image sides must be multiples of: the tile size, or one latent cell."""
        return self.tile_size or self.spatial_factor

    @property
    def video_pixel_multiple(self) -> int:
        """What video frame sides must be multiples of: the tile size if videos are tiled, else one cell."""
        return self.video_tile_size or self.spatial_factor

    @property
    def video_tile_size(self) -> int:
        """The tile size videos are encoded and decoded in (0: whole frames)."""
        return self.tile_size if self.tile_videos else 0

    @property
    def attn_width(self) -> int:
        """Channels of the middle blocks (and of every attention block)."""
        return self.ch * self.ch_mult[-1]


def emu3() -> VQConfig:
    """The released Emu3 vision tokenizer."""
    return VQConfig()


def tiny(codebook_size: int = 64, **changes) -> VQConfig:
    """A ~0.3M-parameter VQ for tests: 4x spatial, 4x temporal."""
    cfg = VQConfig(codebook_size=codebook_size, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_levels=(2,))
    return replace(cfg, **changes)
