"""A static, preallocated key/value cache with per-row positions.

Layout: one (B, Hkv, S, Dh) key and value buffer per layer, written column by column: every row
writes the same slot range on each call, so slot bookkeeping is one host-side integer (no sync).
Each slot also records the absolute position of the token stored there, or -1 for an empty slot
or a padding token. Left-padded prompts of different lengths therefore share one cache: the pad
slots are simply never attended to, and every row carries its own RoPE positions.

Shapes: B batch, Hkv key/value heads, S capacity in slots, T tokens in this call, Dh head dim.
"""

from __future__ import annotations

import torch
from torch import Tensor

from emu3.model.config import DecoderConfig


class KVCache:
    def __init__(
        self, cfg: DecoderConfig, batch_size: int, capacity: int, *, dtype: torch.dtype, device: torch.device | str
    ) -> None:
        if capacity > cfg.max_seq_len:
            raise ValueError(f"cache capacity {capacity} exceeds the model's max_seq_len {cfg.max_seq_len}")
        shape = (batch_size, cfg.n_kv_heads, capacity, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.positions = torch.full((batch_size, capacity), -1, dtype=torch.long, device=device)  # (B, S)
        self.length = 0  # slots written so far (same for every row)

    @property
    def capacity(self) -> int:
        return self.positions.shape[1]

    @property
    def batch_size(self) -> int:
        return self.positions.shape[0]

    def reset(self) -> None:
        self.positions.fill_(-1)
        self.length = 0

    def reserve(self, input_pos: Tensor) -> tuple[Tensor, Tensor]:
        """Claim the next T slots for tokens at `input_pos` (B, T; -1 = padding).

        Returns the boolean attention mask (B, 1, T, S) for this call's queries and the slot indices
        (T,) to write. Must be called once per forward, before the layers write their keys."""
        b, t = input_pos.shape
        if b != self.batch_size:
            raise ValueError(f"batch of {b} rows does not match the cache's {self.batch_size}")
        if self.length + t > self.capacity:
            raise ValueError(f"cache full: {self.length} + {t} tokens exceed its capacity of {self.capacity}")
        slots = torch.arange(self.length, self.length + t, device=self.positions.device)  # (T,)
        self.positions[:, self.length : self.length + t] = input_pos
        self.length += t
        all_slots = torch.arange(self.capacity, device=self.positions.device)  # (S,)
        causal = all_slots[None, :] <= slots[:, None]  # (T, S)
        filled = self.positions >= 0  # (B, S)
        mask = causal[None] & filled[:, None, :]  # (B, T, S)
        # A padding query would see no key at all (NaN softmax); let it see itself instead.
        mask = mask | (all_slots[None, :] == slots[:, None])[None]
        return mask[:, None], slots

    def update(self, layer: int, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this call's keys/values (B, Hkv, T, Dh) into `slots`; return the whole buffers."""
        self.keys[layer].index_copy_(2, slots, k.to(self.keys[layer].dtype))
        self.values[layer].index_copy_(2, slots, v.to(self.values[layer].dtype))
        return self.keys[layer], self.values[layer]

    def copy_rows(self, index: Tensor) -> KVCache:
        """A new cache whose row i is this cache's row index[i] (e.g. several samples per prompt)."""
        new = object.__new__(KVCache)
        new.keys = [k.index_select(0, index) for k in self.keys]
        new.values = [v.index_select(0, index) for v in self.values]
        new.positions = self.positions.index_select(0, index)
        new.length = self.length
        return new

    def next_positions(self) -> Tensor:
        """(B,) the position the next token of each row should take: one past its last real token."""
        return self.positions.max(dim=1).values + 1
