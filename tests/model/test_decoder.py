"""Invariants of the decoder on a tiny random model: cache, padding, packing, rope, dropout."""

import math

import pytest
import torch

from emu3.model.config import DecoderConfig, emu3_8b, tiny
from emu3.model.init import build_decoder, meta_decoder
from emu3.model.layers import RMSNorm, apply_rope, rope_cos_sin, rope_inv_freq


@pytest.fixture(scope="module")
def model():
    return build_decoder(tiny(), seed=0).eval()


def test_emu3_8b_has_8_49b_parameters():
    cfg = emu3_8b()
    n = sum(p.numel() for p in meta_decoder(cfg).parameters())
    assert n == cfg.num_parameters()
    assert round(n / 1e9, 2) == 8.49
    assert (cfg.head_dim, cfg.n_rep, cfg.vocab_size) == (128, 4, 184_622)
    assert emu3_8b("chat").max_seq_len == 131_072 and emu3_8b("stage1").image_area == 512 * 512


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dim": 65}, "divisible by n_heads"),
        ({"n_kv_heads": 3}, "divisible by n_kv_heads"),
        ({"pad_id": 9999}, "outside the vocabulary"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_config_is_a_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny(**changes)


def test_cached_one_token_at_a_time_equals_full_forward(model):
    tokens = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(1))
    full = model(tokens)
    cache = model.new_cache(2, 32)
    steps = [model(tokens[:, :7], cache=cache)] + [model(tokens[:, i : i + 1], cache=cache) for i in range(7, 24)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert full.dtype == torch.float32 and full.shape == (2, 24, 512)


def test_left_padded_batch_equals_rows_one_by_one(model):
    g = torch.Generator().manual_seed(2)
    rows = [torch.randint(1, 512, (n,), generator=g) for n in (5, 11, 8)]
    width, new = 11, 6
    tokens = torch.zeros(3, width, dtype=torch.long)
    pos = torch.full((3, width), -1)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :] = r
        pos[i, width - len(r) :] = torch.arange(len(r))
    # Cache-free padded forward vs each row alone.
    padded = model(tokens, pos)
    for i, r in enumerate(rows):
        torch.testing.assert_close(padded[i, width - len(r) :], model(r[None])[0], atol=1e-5, rtol=1e-5)
    # Cached prefill + decode with per-row positions vs each row alone.
    cache = model.new_cache(3, width + new)
    logits = [model(tokens, pos, cache=cache)[:, -1]]
    follow = torch.randint(1, 512, (3, new), generator=g)
    for j in range(new):
        logits.append(model(follow[:, j : j + 1], cache=cache)[:, -1])
    for i, r in enumerate(rows):
        alone = model(torch.cat([r, follow[i]])[None])[0, len(r) - 1 :]
        torch.testing.assert_close(
            torch.stack([step[i] for step in logits[:-1]] + [logits[-1][i]]), alone, atol=1e-5, rtol=1e-5
        )


def test_packed_documents_do_not_see_each_other(model):
    a, b = torch.randint(0, 512, (6,)), torch.randint(0, 512, (9,))
    packed = model(torch.cat([a, b])[None], torch.cat([torch.arange(6), torch.arange(9)])[None])[0]
    torch.testing.assert_close(packed[:6], model(a[None])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[6:], model(b[None])[0], atol=1e-5, rtol=1e-5)


def test_rope_matches_complex_rotation():
    dh, theta = 8, 10_000.0
    x = torch.randn(1, 1, 5, dh)
    pos = torch.arange(5)[None]
    ours = apply_rope(x, *rope_cos_sin(pos, rope_inv_freq(dh, theta), torch.float32))
    # Half-split convention: pair dimension i with i + dh/2.
    z = torch.complex(x[..., : dh // 2], x[..., dh // 2 :])
    angle = pos[0, :, None].float() * rope_inv_freq(dh, theta)
    rotated = z * torch.polar(torch.ones_like(angle), angle)
    torch.testing.assert_close(ours, torch.cat([rotated.real, rotated.imag], -1), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_values_and_gradients_equal_the_plain_expression(dtype):
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(16, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=g))
    x = (torch.randn(3, 5, 16, generator=g) * 3).to(dtype).requires_grad_()
    grad_out = torch.randn(3, 5, 16, generator=g).to(dtype)
    ours = norm(x)
    ga = torch.autograd.grad(ours, (x, norm.weight), grad_out)
    xf = x.float()  # the transformers port's expression, differentiated by autograd
    plain = norm.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(dtype)
    gb = torch.autograd.grad(plain, (x, norm.weight), grad_out)
    assert torch.equal(ours, plain)  # the forward pass is the same expression
    for a, b in zip(ga, gb, strict=True):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a, b)


def test_cache_overflow_and_batch_mismatch_are_errors(model):
    cache = model.new_cache(1, 4)
    with pytest.raises(ValueError, match="cache full"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="does not match"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len"):
        model.new_cache(1, 10_000)


def test_dropout_only_in_training():
    m = build_decoder(tiny(dropout=0.5), seed=0)
    tokens = torch.randint(0, 512, (1, 10))
    m.eval()
    torch.testing.assert_close(m(tokens), m(tokens))
    m.train()
    assert not torch.allclose(m(tokens), m(tokens))


def test_activation_checkpointing_gives_the_same_gradients():
    tokens = torch.randint(0, 512, (2, 12))
    grads = []
    for ckpt in (False, True):
        m = build_decoder(tiny(), seed=3).train()
        m.activation_checkpointing = ckpt
        m(tokens).logsumexp(-1).mean().backward()
        grads.append(m.blocks[0].attn.wq.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_padding_row_gets_no_gradient():
    m = build_decoder(tiny(pad_id=0), seed=0).train()
    assert m.embed.weight[0].abs().sum() == 0
    m(torch.tensor([[0, 5, 6]])).sum().backward()
    assert m.embed.weight.grad[0].abs().sum() == 0 and m.embed.weight.grad[5].abs().sum() > 0


def test_initialisation_is_seeded_and_has_the_right_scale():
    a, b = build_decoder(tiny(), seed=7), build_decoder(tiny(), seed=7)
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert math.isclose(a.blocks[0].ffn.w_up.weight.std().item(), 0.02, rel_tol=0.1)
    assert isinstance(a.cfg, DecoderConfig)


def test_bf16_forward_is_close_to_fp32(model):
    tokens = torch.randint(0, 512, (2, 16))
    bf = build_decoder(tiny(), seed=0, dtype=torch.bfloat16).eval()
    out = bf(tokens)
    assert out.dtype == torch.float32
    assert (out - model(tokens)).abs().max() < 0.05
