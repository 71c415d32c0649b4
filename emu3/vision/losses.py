"""Adversarial training of the VQ decoder: a patch discriminator and hinge losses.

Pixel losses (L1, L2) are minimised by the mean of the plausible images, so a decoder trained on them
alone draws soft blobs where an edge is uncertain. A patch discriminator scores overlapping patches
as real or reconstructed, and the decoder is pushed to make its patches indistinguishable, which
brings edges back (Esser et al. 2021, "Taming Transformers", the VQGAN recipe that MoVQGAN and the
Emu3 tokenizer build on; spec 2.1 lists a GAN term for the released tokenizer).

Imported only by the train_vq recipe. Shapes: B batch, C channels, H x W pixels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Strided 4x4 convolutions down to a (B, 1, h, w) map of real-vs-fake logits, one per patch
    (PatchGAN, Isola et al. 2017). GroupNorm instead of BatchNorm keeps a batch's scores independent
    of the other images in it."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, layers):
            out = width * min(2**i, 8)
            mods += [nn.Conv2d(ch, out, 4, stride=2, padding=1, bias=False), nn.GroupNorm(8, out), nn.LeakyReLU(0.2)]
            ch = out
        mods += [nn.Conv2d(ch, 1, 3, padding=1)]
        self.net = nn.Sequential(*mods)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, C, H, W) pixels in [-1, 1] -> (B, 1, h, w) logits."""
        return self.net(pixels)


def discriminator_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean(relu(1 - D(real))) / 2 + mean(relu(1 + D(fake))) / 2."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """-mean(D(reconstruction)): the decoder is rewarded where the critic takes its patches for real."""
    return -fake_logits.mean()
