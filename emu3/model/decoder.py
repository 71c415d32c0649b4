"""Emu3Decoder: token ids in, next-token logits out.

embed -> dropout -> n_layers x Block -> RMSNorm -> lm_head (untied), logits returned in fp32.
The decoder never sees pixels, text or sampling: it is a pure function of vocab ids (plus an
optional cache that the caller owns). One forward serves training, prefill and decode; the only
difference is whether `input_pos` and a `cache` are passed.

Shapes: B batch, T tokens, D dim, V vocab.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from emu3.model.config import DecoderConfig
from emu3.model.kv_cache import KVCache
from emu3.model.layers import Block, RMSNorm, rope_cos_sin, rope_inv_freq, sdpa, segment_mask, self_attention


class Emu3Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=cfg.pad_id)
        self.embed_dropout = nn.Dropout(cfg.dropout)  # BAAI has it; the transformers port does not
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.activation_checkpointing = False

    def forward(self, tokens: Tensor, input_pos: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Logits (B, T, V) in fp32.

        Args:
            tokens: (B, T) vocab ids.
            input_pos: (B, T) absolute positions; -1 marks a padding token. Without a cache, a 0 after
                the start of a row starts a new, separately attended document (packing). None means
                arange(T) without a cache, or "continue each row" with one.
            cache: a KVCache to read and extend (prefill / decode); None for a cache-free forward.
        """
        return self.logits(self.hidden(tokens, input_pos, cache))

    def logits(self, hidden: Tensor, vocab_slice: slice | None = None) -> Tensor:
        """Project final hidden states (..., D) to fp32 logits (..., V), or only onto the vocab ids in
        `vocab_slice` (e.g. the visual tokens) when the others cannot be chosen anyway."""
        if vocab_slice is None:
            return self.lm_head(hidden).float()
        return torch.nn.functional.linear(hidden, self.lm_head.weight[vocab_slice]).float()

    def hidden(self, tokens: Tensor, input_pos: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Final normalised hidden states (B, T, D) — the input of `logits` (training losses chunk over V)."""
        b, t = tokens.shape
        if cache is not None:
            if b != cache.batch_size:
                raise ValueError(f"batch of {b} rows does not match the cache's {cache.batch_size}")
            if input_pos is None:
                input_pos = cache.next_positions()[:, None] + torch.arange(t, device=tokens.device)
            mask, slots = cache.reserve(input_pos)
            attends = [partial(_cached_attend, cache, i, slots, mask) for i in range(len(self.blocks))]
        else:
            mask = None if input_pos is None else segment_mask(input_pos)
            attends = [partial(_plain_attend, mask)] * len(self.blocks)
        if input_pos is None:
            input_pos = torch.arange(t, device=tokens.device).expand(b, t)
        x = self.embed_dropout(self.embed(tokens))  # (B, T, D)
        rope = rope_cos_sin(input_pos, rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta, tokens.device), x.dtype)
        use_ckpt = self.activation_checkpointing and self.training and torch.is_grad_enabled() and cache is None
        for block, attend in zip(self.blocks, attends, strict=True):
            if use_ckpt:
                x = checkpoint(block, x, rope, attend, use_reentrant=False)
            else:
                x = block(x, rope, attend)
        return self.norm(x)

    def new_cache(self, batch_size: int, capacity: int | None = None, *, dtype: torch.dtype | None = None) -> KVCache:
        """A preallocated cache on this model's device and dtype."""
        param = self.lm_head.weight
        return KVCache(
            self.cfg, batch_size, capacity or self.cfg.max_seq_len, dtype=dtype or param.dtype, device=param.device
        )


def _plain_attend(mask: Tensor | None, q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
    return self_attention(q, k, v, mask, dropout_p)


def _cached_attend(
    cache: KVCache, layer: int, slots: Tensor, mask: Tensor, q: Tensor, k: Tensor, v: Tensor, dropout_p: float
) -> Tensor:
    keys, values = cache.update(layer, slots, k, v)  # (B, Hkv, S, Dh)
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        # On CPU, masked SDPA over a cache runs about 7x slower in bf16 than in fp32 (torch 2.13, one
        # query over 400 slots: 4.5 ms vs 0.6 ms), and attention is a small share of the FLOPs.
        return sdpa(q.float(), keys.float(), values.float(), mask, dropout_p).to(q.dtype)
    return sdpa(q, keys.to(q.dtype), values.to(q.dtype), mask, dropout_p)
