"""Locality of a vision tokenizer's codes: a code should depend on the pixels near it, not on the
whole image.

Why it matters: the Emu3 encoder normalises with GroupNorm, whose statistics are taken over the whole
image, and its receptive field covers a small image entirely. Trained on reconstruction alone, the
codes of an unchanged region then change when something elsewhere in the image changes (measured on
the demo world's 72 px tokenizer with benchmarks/vq_locality.py: the same object in the same cell
kept only half of its 9 codes when a second object was added elsewhere, and a plain background took
several different codes). A
decoder that generates those codes must model that non-local noise; a multi-object scene becomes a
much harder sequence than the sum of its objects.

The regulariser: paste a rectangle from another image into each image (CutMix, Yun et al. 2019),
encode both, and penalise the difference of the pre-quantisation latents at the code positions
whose receptive window (their own patch plus `margin` pixels) saw no changed pixel. The difference is
divided by the latents' variance (no gradient through it), so collapsing the latents does not pay.

Imported only by the train_vq recipe. Shapes: B batch, H x W pixels, h x w codes, D latent channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cutmix(pixels: Tensor, generator: torch.Generator, min_frac: float = 0.2, max_frac: float = 0.6) -> Tensor:
    """Each image of (B, 3, H, W) with one random rectangle (sides `min_frac`..`max_frac` of the image)
    replaced by the same rectangle of the next image in the batch."""
    b, _, h, w = pixels.shape
    out = pixels.clone()
    donor = pixels.roll(1, dims=0)
    for i in range(b):
        rh, rw = (
            int(s * (min_frac + (max_frac - min_frac) * torch.rand((), generator=generator).item())) for s in (h, w)
        )
        top = int(torch.randint(0, h - rh + 1, (), generator=generator))
        left = int(torch.randint(0, w - rw + 1, (), generator=generator))
        out[i, :, top : top + rh, left : left + rw] = donor[i, :, top : top + rh, left : left + rw]
    return out


def unchanged_codes(a: Tensor, b: Tensor, factor: int, margin: int) -> Tensor:
    """(B, h, w) bool: code positions whose `factor`-pixel patch, widened by `margin` pixels on every
    side, is identical in the (B, 3, H, W) images `a` and `b`."""
    changed = (a != b).any(dim=1, keepdim=True).float()  # (B, 1, H, W)
    if margin > 0:
        changed = F.max_pool2d(changed, 2 * margin + 1, stride=1, padding=margin)
    return F.max_pool2d(changed, factor, stride=factor)[:, 0] == 0


def locality_loss(z: Tensor, z_mixed: Tensor, keep: Tensor) -> Tensor:
    """Mean squared latent difference over the `keep` positions, relative to the latents' variance
    (per channel over all positions, averaged): an encoder cannot lower it by shrinking its latents
    towards a constant, only by making them depend less on far-away pixels.

    z, z_mixed: (B, h, w, D) pre-quantisation latents of the images and of their mixed copies;
    keep: (B, h, w) bool from `unchanged_codes`. Zero when no position is kept."""
    if not keep.any():
        return z.sum() * 0.0
    scale = z.detach().float().flatten(0, -2).var(dim=0, correction=0).mean().clamp_min(1e-8)
    diff = (z.float() - z_mixed.float()).pow(2).mean(dim=-1)  # (B, h, w)
    return diff[keep].mean() / scale
