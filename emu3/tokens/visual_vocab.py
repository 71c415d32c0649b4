"""VQ codebook index <-> decoder vocab id, in one place.

`codes` are VQ codebook indices in [0, codebook_size); `token_ids` are decoder vocab ids. Emu3 keeps
the visual tokens as one contiguous block (`<|visual token k|>` has id `first_id + k`, spec 3.1), so the
mapping is an offset; any id outside the block is rejected instead of turned into a wrong code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emu3.tokens.special import SpecialTokens


@dataclass(frozen=True)
class VisualVocab:
    """The contiguous block of visual token ids [first_id, first_id + codebook_size)."""

    first_id: int
    codebook_size: int

    def __post_init__(self) -> None:
        if self.first_id < 0 or self.codebook_size <= 0:
            raise ValueError(f"need first_id >= 0 and codebook_size > 0, got {self}")

    @classmethod
    def from_special(cls, special: SpecialTokens) -> VisualVocab:
        return cls(first_id=special.visual_start, codebook_size=special.codebook_size)

    @property
    def end_id(self) -> int:
        """One past the last visual id."""
        return self.first_id + self.codebook_size

    def is_visual(self, token_ids: Tensor) -> Tensor:
        """Bool tensor: which ids are visual tokens."""
        return (token_ids >= self.first_id) & (token_ids < self.end_id)

    def codes_to_ids(self, codes: Tensor) -> Tensor:
        """Codebook indices (any shape, integer) -> vocab ids. Raises on codes outside the codebook."""
        codes = torch.as_tensor(codes)
        if codes.is_floating_point():
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got range [{int(codes.min())}, {int(codes.max())}]"
            )
        return codes.long() + self.first_id

    def ids_to_codes(self, token_ids: Tensor) -> Tensor:
        """Vocab ids (any shape) -> codebook indices. Raises, naming the first offender, on a non-visual id."""
        token_ids = torch.as_tensor(token_ids)
        bad = ~self.is_visual(token_ids)
        if bad.any():
            where = bad.nonzero()[0].tolist()
            raise ValueError(
                f"id {int(token_ids[tuple(where)])} at index {where} is not a visual token "
                f"(visual ids are [{self.first_id}, {self.end_id}))"
            )
        return token_ids.long() - self.first_id
