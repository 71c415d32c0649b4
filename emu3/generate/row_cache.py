"""RowCache: a static key/value cache whose rows fill independently, for continuous batching.

KVCache (model/kv_cache.py) writes the same slot range in every row on each call, which suits one
batch that starts and ends together. A server admits and retires requests at any step, so here
every row keeps its own write cursor: a row's tokens occupy slots 0, 1, 2, ... of that row, whatever
the other rows hold. As in KVCache each slot records the absolute position of its token (-1 = empty),
so the attention mask admits, for a query in slot s of row b, the filled slots of row b up to s.

A retired row is cleared by setting its positions to -1; a new request's prompt is prefilled in a
small KVCache of its own and copied into free rows (`load_rows`). `window(rows, slots)` returns a view
on the first rows / slots, so a step over a half-empty batch computes on the occupied part only.

The decoder uses a cache through `batch_size`, `reserve` and `update` only; RowCache provides the same
three, with per-row slot indices (B, T) instead of KVCache's shared (T,).

Shapes: B rows, Hkv key/value heads, S capacity in slots, T tokens in this call, Dh head dim.
"""

from __future__ import annotations

import torch
from torch import Tensor

from emu3.model.config import DecoderConfig
from emu3.model.kv_cache import KVCache


class RowCache:
    def __init__(
        self, cfg: DecoderConfig, rows: int, capacity: int, *, dtype: torch.dtype, device: torch.device | str
    ) -> None:
        if capacity > cfg.max_seq_len:
            raise ValueError(f"cache capacity {capacity} exceeds the model's max_seq_len {cfg.max_seq_len}")
        shape = (rows, cfg.n_kv_heads, capacity, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.positions = torch.full((rows, capacity), -1, dtype=torch.long, device=device)  # (B, S)
        self.cursor = torch.zeros(rows, dtype=torch.long, device=device)  # (B,) next slot to write per row

    @classmethod
    def for_model(cls, model, rows: int, capacity: int) -> RowCache:
        weight = model.lm_head.weight
        return cls(model.cfg, rows, capacity, dtype=weight.dtype, device=weight.device)

    @property
    def batch_size(self) -> int:
        return self.positions.shape[0]

    @property
    def capacity(self) -> int:
        return self.positions.shape[1]

    def window(self, rows: int, slots: int) -> RowCache:
        """A view on rows [0, rows) and slots [0, slots): writes through it land in this cache."""
        view = object.__new__(RowCache)
        view.keys = [k[:rows, :, :slots] for k in self.keys]
        view.values = [v[:rows, :, :slots] for v in self.values]
        view.positions = self.positions[:rows, :slots]
        view.cursor = self.cursor[:rows]
        return view

    def clear_rows(self, rows: list[int]) -> None:
        """Forget what `rows` hold (their K/V stay in memory but are never attended again)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.positions.device)
        self.positions.index_fill_(0, index, -1)
        self.cursor.index_fill_(0, index, 0)

    def load_rows(self, rows: list[int], source: KVCache) -> None:
        """Copy a prefilled cache (one source row per entry of `rows`) into slots [0, L) of `rows`."""
        if source.batch_size != len(rows):
            raise ValueError(f"{source.batch_size} prefilled rows for {len(rows)} target rows")
        length = source.length
        if length > self.capacity:
            raise ValueError(f"a prompt of {length} tokens does not fit a cache row of {self.capacity} slots")
        index = torch.as_tensor(rows, dtype=torch.long, device=self.positions.device)
        for dst, src in zip(self.keys + self.values, source.keys + source.values, strict=True):
            dst[index, :, :length] = src[:, :, :length].to(dst.dtype)
        self.positions.index_fill_(0, index, -1)
        self.positions[index, :length] = source.positions[:, :length]
        self.cursor.index_fill_(0, index, length)

    def reserve(self, input_pos: Tensor) -> tuple[Tensor, Tensor]:
        """Claim T slots per row at its cursor for tokens at `input_pos` (B, T; -1 = padding / idle row).

        Returns the attention mask (B, 1, T, S) and the slots (B, T) to write. Rows whose tokens are all
        padding keep their cursor: an idle row rewrites the same empty slot every step."""
        b, t = input_pos.shape
        if b != self.batch_size:
            raise ValueError(f"batch of {b} rows does not match the cache's {self.batch_size}")
        slots = self.cursor[:, None] + torch.arange(t, device=self.cursor.device)  # (B, T)
        slots = slots.clamp_max(self.capacity - 1)  # only idle rows can reach the end; active rows are checked
        self.positions.scatter_(1, slots, input_pos)
        self.cursor += (input_pos >= 0).any(1).long() * t
        all_slots = torch.arange(self.capacity, device=slots.device)  # (S,)
        causal = all_slots[None, None, :] <= slots[:, :, None]  # (B, T, S)
        mask = causal & (self.positions >= 0)[:, None, :]
        # A padding query would see no key at all (NaN softmax); let it see its own slot instead.
        mask = mask | (all_slots[None, None, :] == slots[:, :, None])
        return mask[:, None], slots

    def update(self, layer: int, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write keys/values (B, Hkv, T, Dh) into each row's `slots` (B, T); return the whole buffers."""
        index = slots[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])  # (B, Hkv, T, Dh)
        self.keys[layer].scatter_(2, index, k.to(self.keys[layer].dtype))
        self.values[layer].scatter_(2, index, v.to(self.values[layer].dtype))
        return self.keys[layer], self.values[layer]
