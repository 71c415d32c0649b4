"""Tiling: cut the last two (spatial) axes of a batch into equal tiles, and put them back.

The vision tokenizer can encode and decode each tile on its own (`VQConfig.tile_size`). Its
GroupNorm layers normalise with statistics of everything they see, so on a whole image every code
depends on every pixel; on tiles, a code depends only on its own tile's pixels. Shapes:

    split: (B, *mid, H, W) -> (B * nh * nw, *mid, th, tw), tiles in row-major order per item
    merge: the inverse, given the grid (nh, nw)
"""

from __future__ import annotations

from torch import Tensor


def split(x: Tensor, tile_h: int, tile_w: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, *mid, H, W) -> ((B * nh * nw, *mid, tile_h, tile_w), (nh, nw))."""
    *lead, h, w = x.shape
    if h % tile_h or w % tile_w:
        raise ValueError(f"a {h}x{w} grid does not divide into {tile_h}x{tile_w} tiles")
    b, mid = lead[0], lead[1:]
    nh, nw, nd = h // tile_h, w // tile_w, len(mid)
    x = x.reshape(b, *mid, nh, tile_h, nw, tile_w)
    x = x.permute(0, 1 + nd, 3 + nd, *range(1, 1 + nd), 2 + nd, 4 + nd)
    return x.reshape(b * nh * nw, *mid, tile_h, tile_w), (nh, nw)


def merge(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """Inverse of `split`: (B * nh * nw, *mid, th, tw) -> (B, *mid, nh * th, nw * tw)."""
    nh, nw = grid
    n, *mid, th, tw = x.shape
    if n % (nh * nw):
        raise ValueError(f"{n} tiles do not make whole {nh}x{nw} grids")
    nd = len(mid)
    x = x.reshape(n // (nh * nw), nh, nw, *mid, th, tw)
    x = x.permute(0, *range(3, 3 + nd), 1, 3 + nd, 2, 4 + nd)
    return x.reshape(n // (nh * nw), *mid, nh * th, nw * tw)
