"""Nearest-code vector quantisation (spec 2.3), with what training needs on top.

Codes are argmin of the squared L2 distance ||z||^2 + ||e||^2 - 2 z.e over the codebook, computed
exactly as the official code does so that codes match bit for bit in fp32. Training uses the
straight-through estimator with the usual codebook + beta * commitment losses, and reports how many
codes are in use so that dead codes can be restarted from encoder outputs.

Shapes: N vectors, D code width, K codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Quantized:
    z_q: Tensor  # (..., D) straight-through quantised vectors
    codes: Tensor  # (...) code indices
    codebook_loss: Tensor  # ||sg(z) - e||^2
    commitment_loss: Tensor  # ||z - sg(e)||^2


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    @property
    def codebook_size(self) -> int:
        return self.embedding.num_embeddings

    def nearest(self, z: Tensor) -> Tensor:
        """(..., D) vectors -> (...) indices of the nearest codes."""
        flat = z.reshape(-1, z.shape[-1])  # (N, D)
        weight = self.embedding.weight
        distances = flat.pow(2).sum(1, keepdim=True) + weight.pow(2).sum(1) - 2 * flat @ weight.t()  # (N, K)
        return distances.argmin(1).view(z.shape[:-1])

    def lookup(self, codes: Tensor) -> Tensor:
        """(...) indices -> (..., D) code vectors."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]")
        return self.embedding(codes)

    def quantize(self, z: Tensor) -> Quantized:
        """Training path: straight-through estimator and the two VQ losses."""
        codes = self.nearest(z)
        e = self.embedding(codes)
        return Quantized(
            z_q=z + (e - z).detach(),
            codes=codes,
            codebook_loss=F.mse_loss(e, z.detach()),
            commitment_loss=F.mse_loss(z, e.detach()),
        )

    @torch.no_grad()
    def usage(self, codes: Tensor) -> Tensor:
        """(K,) how often each code appears in `codes`."""
        return torch.bincount(codes.reshape(-1), minlength=self.codebook_size)

    @torch.no_grad()
    def restart_dead(self, counts: Tensor, z: Tensor, generator: torch.Generator | None = None) -> int:
        """Re-initialise codes with zero count to random encoder outputs z (N, D); returns how many."""
        dead = (counts == 0).nonzero().flatten()
        if dead.numel() == 0 or z.numel() == 0:
            return 0
        flat = z.reshape(-1, z.shape[-1])
        # drawn on the generator's device (a CPU generator for a CUDA codebook too), used on the codebook's
        pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=generator,
                             device=generator.device if generator is not None else flat.device)  # fmt: skip
        weight = self.embedding.weight
        weight[dead.to(weight.device)] = flat[pick.to(flat.device)].to(weight.dtype)
        return int(dead.numel())
