"""Chunked causal attention (the CPU training path) equals torch's SDPA, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from emu3.model.layers import CHUNKED_MAX_TOKENS, chunked_attention, segment_mask, self_attention


def _qkv(t=100, heads=4, kv_heads=2, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, h, t, dim, generator=g, requires_grad=True) for h in (heads, kv_heads, kv_heads)]


def _packed_mask(t):
    # two rows: documents of 4, 3 (+2 padding), 1 ... tokens; and one whole document
    row = ([0, 1, 2, 3, 0, 1, 2, -1, -1, 0] * t)[:t]
    return segment_mask(torch.tensor([row, list(range(t))]))


@pytest.mark.parametrize("chunk", [7, 32, 100, 128])
@pytest.mark.parametrize("packed", [False, True])
def test_chunked_attention_equals_sdpa(chunk, packed):
    q, k, v = _qkv()
    mask = _packed_mask(100) if packed else None
    ours = chunked_attention(q, k, v, mask, chunk=chunk)
    if packed:
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    else:
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5)
    grad = torch.randn_like(ref)
    ours_grads = torch.autograd.grad(ours, (q, k, v), grad)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_self_attention_uses_sdpa_beyond_the_limit_and_with_dropout():
    q, k, v = _qkv(t=CHUNKED_MAX_TOKENS + 8, heads=2, kv_heads=1, dim=8)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(self_attention(q, k, v, None, 0.0), ref)
    torch.manual_seed(0)
    dropped = self_attention(q[:, :, :16], k[:, :, :16], v[:, :, :16], None, 0.5)
    torch.manual_seed(0)
    expect = F.scaled_dot_product_attention(q[:, :, :16], k[:, :, :16], v[:, :, :16], is_causal=True,
                                            dropout_p=0.5, enable_gqa=True)  # fmt: skip
    torch.testing.assert_close(dropped, expect)
