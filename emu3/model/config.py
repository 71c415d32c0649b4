"""DecoderConfig: the shape of the Emu3 decoder, plus named presets.

The released values come from BAAI's `Emu3-Chat/config.json` (spec section 1.1); the per-checkpoint
context lengths and image areas of Emu3-Gen and Emu3-Stage1 are the spec's INFERRED values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq_len: int = 9216
    rope_theta: float = 1_000_000.0
    norm_eps: float = 1e-5
    # The official model applies one dropout probability in three places (embeddings, both residual
    # branches, attention probabilities); all are off in eval mode.
    dropout: float = 0.1
    pad_id: int | None = None  # embedding row that gets no gradient (`<|endoftext|>` in Emu3)
    # Pixel area of the images the checkpoint was trained on (a generation default, not a shape).
    image_area: int = 518_400

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.dim, self.n_layers, self.n_heads, self.n_kv_heads, self.ffn_dim) <= 0:
            raise ValueError(f"all sizes must be positive: {self}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")
        if self.max_seq_len <= 0 or self.rope_theta <= 0:
            raise ValueError("max_seq_len and rope_theta must be positive")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def n_rep(self) -> int:
        """Query heads per key/value head (GQA group size)."""
        return self.n_heads // self.n_kv_heads

    def num_parameters(self) -> int:
        """Exact parameter count (embedding and lm_head are untied)."""
        d, h = self.dim, self.head_dim
        attn = d * self.n_heads * h * 2 + d * self.n_kv_heads * h * 2
        ffn = 3 * d * self.ffn_dim
        per_layer = attn + ffn + 2 * d
        return 2 * self.vocab_size * d + self.n_layers * per_layer + d


def tiny(vocab_size: int = 512, **changes) -> DecoderConfig:
    """A few-hundred-thousand-parameter decoder for tests."""
    cfg = DecoderConfig(
        vocab_size=vocab_size,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=128,
        max_seq_len=512,
        rope_theta=10_000.0,
        dropout=0.0,
    )
    return replace(cfg, **changes)


_EMU3_CONTEXT = {"gen": (9216, 518_400), "chat": (131_072, 262_144), "stage1": (5120, 262_144)}


def emu3_8b(variant: Literal["gen", "chat", "stage1"] = "gen") -> DecoderConfig:
    """The released 8B decoder. `variant` picks the context length and image area of each checkpoint:
    Chat (131072 / 512x512, read from its config.json), Gen (9216 / 720x720, INFERRED) and Stage1
    (5120 / 512x512, INFERRED) — spec section 1.1."""
    if variant not in _EMU3_CONTEXT:
        raise ValueError(f"unknown Emu3 variant {variant!r}; choose one of {sorted(_EMU3_CONTEXT)}")
    max_seq_len, image_area = _EMU3_CONTEXT[variant]
    return DecoderConfig(
        vocab_size=184_622,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=14_336,
        max_seq_len=max_seq_len,
        rope_theta=1_000_000.0,
        norm_eps=1e-5,
        dropout=0.1,
        pad_id=151_643,
        image_area=image_area,
    )
