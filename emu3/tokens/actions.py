"""Continuous robot actions <-> discrete vocabulary ids: per-dimension uniform bins (OpenVLA / UniVLA).

Each dimension of an action in [low, high] is cut into `n_bins` equal bins (256 by default); bin b of
any dimension is the vocabulary id `first_id + b`, and it decodes to the bin centre, so the round-trip
error of an in-range value is at most half a bin, (high - low) / (2 * n_bins). Out-of-range values are
clipped first. A span of `chunk` consecutive actions is written as

    <boa> a[0,0] a[0,1] .. a[0,D-1] a[1,0] .. a[k-1,D-1] <eoa>

with the UniVLA markers boa = <|extra_198|>, eoa = <|extra_199|> (spec section 6). UniVLA places the
bins on the last text ids below <|endoftext|>; where a from-scratch tokenizer has no spare tail the
caller picks `first_id` (e.g. right after the visual block).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ActionTokenizer:
    first_id: int  # vocabulary id of bin 0
    dims: int = 3  # action dimensions
    n_bins: int = 256
    low: float = -1.0
    high: float = 1.0
    chunk: int = 1  # actions per span
    boa: int | None = None  # begin-of-action marker id (None: spans without markers)
    eoa: int | None = None

    def __post_init__(self) -> None:
        if self.first_id < 0 or self.dims <= 0 or self.n_bins <= 1 or self.chunk <= 0:
            raise ValueError(f"need first_id >= 0, dims > 0, n_bins > 1, chunk > 0, got {self}")
        if not self.high > self.low:
            raise ValueError(f"need high > low, got [{self.low}, {self.high}]")
        if (self.boa is None) != (self.eoa is None):
            raise ValueError("give both boa and eoa, or neither")
        for marker in (self.boa, self.eoa):
            if marker is not None and self.first_id <= marker < self.end_id:
                raise ValueError(f"marker id {marker} lies inside the bin ids [{self.first_id}, {self.end_id})")

    @property
    def end_id(self) -> int:
        """One past the last bin id."""
        return self.first_id + self.n_bins

    @property
    def bin_width(self) -> float:
        return (self.high - self.low) / self.n_bins

    @property
    def max_error(self) -> float:
        """Largest round-trip error of an in-range value (half a bin)."""
        return self.bin_width / 2

    @property
    def span_length(self) -> int:
        """Ids in one span: chunk * dims bins plus the two markers (if any)."""
        return self.chunk * self.dims + (2 if self.boa is not None else 0)

    def encode(self, actions: Tensor) -> Tensor:
        """(..., dims) floats -> (..., dims) vocabulary ids."""
        if actions.shape[-1] != self.dims:
            raise ValueError(f"expected actions with {self.dims} dimensions, got shape {tuple(actions.shape)}")
        x = (actions.double().clamp(self.low, self.high) - self.low) / self.bin_width
        return x.floor().long().clamp(0, self.n_bins - 1) + self.first_id

    def decode(self, ids: Tensor) -> Tensor:
        """(..., dims) bin ids -> (..., dims) float32 bin centres."""
        bins = ids.long() - self.first_id
        if bool(((bins < 0) | (bins >= self.n_bins)).any()):
            raise ValueError(f"ids outside the action bins [{self.first_id}, {self.end_id})")
        return (self.low + (bins.double() + 0.5) * self.bin_width).float()

    def span(self, actions: Tensor) -> list[int]:
        """(chunk, dims) actions -> the ids of one span, markers included."""
        if actions.shape != (self.chunk, self.dims):
            raise ValueError(f"a span holds ({self.chunk}, {self.dims}) actions, got {tuple(actions.shape)}")
        body = self.encode(actions).flatten().tolist()
        return [self.boa, *body, self.eoa] if self.boa is not None else body

    def parse(self, ids: list[int] | Tensor) -> Tensor:
        """The ids of one span (with or without its markers) -> (chunk, dims) actions."""
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if self.boa is not None and len(ids) == self.span_length:
            if int(ids[0]) != self.boa or int(ids[-1]) != self.eoa:
                raise ValueError("an action span must start with <boa> and end with <eoa>")
            ids = ids[1:-1]
        if len(ids) != self.chunk * self.dims:
            raise ValueError(f"expected {self.chunk * self.dims} action ids, got {len(ids)}")
        return self.decode(ids.view(self.chunk, self.dims))
