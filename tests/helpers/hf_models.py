"""Tiny random transformers Emu3 models: the parity reference (test-only; needs the [dev] extra)."""

from __future__ import annotations

import pytest
import torch

VOCAB = 600
VISUAL_START = 300  # visual code k -> id 300 + k
CODEBOOK = 256


def require_transformers():
    return pytest.importorskip("transformers", reason="parity tests need transformers (pip install 'emu3[dev]')")


def vocabulary_map() -> dict[str, int]:
    vocab = {f"tok{i}": i for i in range(VOCAB)}
    vocab.update({f"<|visual token {k:06d}|>": VISUAL_START + k for k in range(CODEBOOK)})
    vocab.update({"<image>": 3, "<|extra_200|>": 4, "<|image start|>": 5, "<|extra_201|>": 6, "<|image end|>": 7})
    return vocab


def tiny_hf_emu3(seed: int = 0, *, dropout: float = 0.0):
    """A random Emu3ForConditionalGeneration with non-trivial norm weights, in eval mode."""
    transformers = require_transformers()
    torch.manual_seed(seed)
    text = transformers.Emu3TextConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": 5e5},
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attention_dropout=dropout,
        rms_norm_eps=1e-5,
    )
    vq = transformers.Emu3VQVAEConfig(
        codebook_size=CODEBOOK,
        embed_dim=4,
        latent_channels=4,
        base_channels=32,
        channel_multiplier=[1, 2],
        num_res_blocks=1,
        attn_resolutions=[],
        hidden_size=64,
        temporal_downsample_factor=4,
    )
    config = transformers.Emu3Config(text_config=text, vq_config=vq, vocabulary_map=vocabulary_map())
    model = transformers.Emu3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return model


def mixed_tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Text ids and visual-token ids interleaved, as in a real Emu3 sequence."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(8, VISUAL_START, (batch, length), generator=g)
    visual = torch.randint(VISUAL_START, VISUAL_START + CODEBOOK, (batch, length), generator=g)
    pick = torch.rand(batch, length, generator=g) < 0.5
    return torch.where(pick, visual, text)
