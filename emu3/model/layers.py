"""Building blocks of the Emu3 decoder: RMSNorm, rotary embeddings, GQA attention, SwiGLU, Block.

Emu3's decoder is Llama with one addition (spec 1.2): a dropout of the same probability on both
residual branches of every block (and on the embeddings, applied in decoder.py). Numerics follow
the transformers port: RMSNorm in fp32, rotary cos/sin computed in fp32 from fp32 inverse
frequencies and cast to the activation dtype, half-split ("rotate_half") rotation.

Shapes: B batch, T tokens, S key slots, D dim, H heads, Hkv key/value heads, Dh head dim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emu3.model.config import DecoderConfig

# `attend(q, k, v, dropout_p)` hides where keys come from: the current tokens only (training, full
# forward) or a static cache (prefill, decode). The decoder builds one per forward.
AttendFn = Callable[[Tensor, Tensor, Tensor, float], Tensor]


class _RMSNormFunction(torch.autograd.Function):
    """weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype), normalised in fp32, with a hand-written
    backward pass: autograd's own, through pow, mean, rsqrt and two broadcast products, makes about
    twice as many passes over x. With y = x * r, r = rsqrt(mean(x^2) + eps) and gy the gradient of y:
    grad_x = r * (gy - y * mean(gy * y)); grad_weight = sum over rows of grad_out * y."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        xf = x.float()
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1) fp32
        ctx.save_for_backward(x, weight, r)
        return weight * (xf * r).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight, r = ctx.saved_tensors
        y = x.float() * r
        gy = (grad_out * weight).float()
        grad_x = gy.sub_(y * (gy * y).mean(-1, keepdim=True)).mul_(r)
        grad_w = (grad_out * y.to(x.dtype)).reshape(-1, x.shape[-1]).sum(0)
        return grad_x.to(x.dtype), grad_w.to(weight.dtype), None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return _RMSNormFunction.apply(x, self.weight, self.eps)


# ---------------------------------------------------------------- rotary embeddings


def rope_inv_freq(head_dim: int, theta: float, device: torch.device | str | None = None) -> Tensor:
    """(Dh/2,) inverse frequencies in fp32."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))


def rope_cos_sin(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin tables (B, T, Dh) for integer `positions` (B, T); negative positions (padding) act as 0."""
    freqs = positions.clamp_min(0).float()[..., None] * inv_freq  # (B, T, Dh/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, Dh)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, T, Dh) by cos/sin (B, T, Dh)."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, Dh)
    return x * cos + _rotate_half(x) * sin


# ---------------------------------------------------------------- attention and MLP


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.dropout = cfg.dropout
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], attend: AttendFn) -> Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, Dh)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, Dh)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = attend(q, k, v, self.dropout if self.training else 0.0)  # (B, H, T, Dh)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg)
        self.residual_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], attend: AttendFn) -> Tensor:
        x = x + self.residual_dropout(self.attn(self.attn_norm(x), rope, attend))
        return x + self.residual_dropout(self.ffn(self.ffn_norm(x)))


# ---------------------------------------------------------------- attention back-ends


# Cache-free self-attention over at most this many tokens runs as `chunked_attention` on a CPU.
CHUNKED_MAX_TOKENS = 1024


def self_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float) -> Tensor:
    """Attention of a cache-free forward: queries and keys are the same T tokens, `mask` (B, 1, T, T)
    from `segment_mask` (causal within documents) or None (causal)."""
    t = q.shape[2]
    if q.device.type == "cpu" and dropout_p == 0.0 and 1 < t <= CHUNKED_MAX_TOKENS:
        return chunked_attention(q, k, v, mask)
    return sdpa(q, k, v, mask, dropout_p)


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float) -> Tensor:
    """Scaled dot-product attention with GQA; `mask` (B, 1, T, S) bool (True = attend) or None = causal."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p, enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, enable_gqa=True)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, chunk: int | None = None) -> Tensor:
    """Causal self-attention (B, H, T, Dh) a block of queries at a time, each block against only the
    keys at or before its end, so that about half of the (T, T) scores are never computed; `mask`
    (B, 1, T, T) bool (True = attend) replaces the causal one and must not let a query see a later
    key (a `segment_mask` does not). Scores in the compute dtype, softmax
    in fp32 (as the math back-end and transformers' eager attention).

    Why: on a CPU, torch's flash kernel takes as long for causal attention as for full attention
    (torch 2.13, bf16, B 8, H 4, T 512, Dh 64, one thread: 97 ms fwd+bwd either way), while blocks of
    64 queries through plain matmuls take 54-64 ms. Above ~1000 tokens the (T, T) / 2 scores kept for
    the backward pass cost more than they save (T 2048: 830 ms against flash's 780), so
    `self_attention` uses this only up to CHUNKED_MAX_TOKENS, and only without attention dropout."""
    b, h, t, d = q.shape
    hk = k.shape[1]
    g = h // hk  # query heads per key/value head, grouped as transformers' repeat_kv groups them
    chunk = chunk or (64 if t <= 512 else 128)
    q = q * d**-0.5  # scaled before the matmul: exact in bf16 when Dh is a power of four (64, 256)
    outs = []
    for start in range(0, t, chunk):
        end = min(start + chunk, t)
        c = end - start
        qi = q[:, :, start:end].reshape(b, hk, g * c, d)
        scores = torch.matmul(qi, k[:, :, :end].transpose(-1, -2)).view(b, hk, g, c, end)
        if mask is None:
            allowed = torch.ones(c, end, dtype=torch.bool, device=q.device).tril(start)
        else:
            allowed = mask[:, :, None, start:end, :end]  # (B, 1, 1, c, end)
        probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1, dtype=torch.float32)
        out = torch.matmul(probs.to(q.dtype).view(b, hk, g * c, end), v[:, :, :end])
        outs.append(out.view(b, h, c, d))
    return torch.cat(outs, dim=2)


def segment_mask(positions: Tensor) -> Tensor:
    """Attention mask (B, 1, T, T) for a cache-free forward from per-token positions (B, T).

    Position -1 marks padding (never attended to); a position 0 after the start of a row begins a
    new document that cannot see earlier ones (packed sequences). Otherwise causal."""
    t = positions.shape[1]
    idx = torch.arange(t, device=positions.device)
    causal = idx[None, :] <= idx[:, None]  # (T, T)
    segment = torch.cumsum((positions == 0).long(), dim=1)  # (B, T)
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    real_key = (positions >= 0)[:, None, :]  # (B, 1, T)
    diagonal = (idx[None, :] == idx[:, None])[None]  # (1, T, T)
    return ((causal[None] & same & real_key) | diagonal)[:, None]
