"""Loading official decoder checkpoints: transformers parity both ways, BAAI sharded layout, strict errors."""

import json

import pytest
import torch
from safetensors.torch import save_file

import emu3
from emu3.convert.safetensors_io import CheckpointError
from tests.helpers.hf_models import mixed_tokens, require_transformers, tiny_hf_emu3

require_transformers()


@pytest.fixture(scope="module")
def hf_model():
    return tiny_hf_emu3(seed=0)


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(folder)
    return folder


def _hf_logits(hf_model, tokens, attention_mask=None):
    with torch.no_grad():
        return hf_model(input_ids=tokens, attention_mask=attention_mask).logits.float()


def test_transformers_folder_loads_with_matching_logits(hf_model, hf_folder):
    ours = emu3.load_decoder(hf_folder)
    tokens = mixed_tokens(2, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), _hf_logits(hf_model, tokens), atol=1e-5, rtol=1e-5)
    assert ours.cfg.rope_theta == 5e5 and ours.cfg.pad_id == 0 and not ours.training


def test_left_padded_batch_matches_transformers(hf_model, hf_folder):
    ours = emu3.load_decoder(hf_folder)
    tokens = mixed_tokens(3, 20, seed=1)
    lengths = [20, 13, 7]
    mask = torch.zeros(3, 20, dtype=torch.long)
    pos = torch.full((3, 20), -1)
    for i, n in enumerate(lengths):
        mask[i, 20 - n :] = 1
        pos[i, 20 - n :] = torch.arange(n)
        tokens[i, : 20 - n] = 0
    hf_pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad():
        ref = hf_model(input_ids=tokens, attention_mask=mask, position_ids=hf_pos).logits.float()
        got = ours(tokens, pos)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(got[i, 20 - n :], ref[i, 20 - n :], atol=1e-5, rtol=1e-5)


def test_our_causal_lm_save_opens_in_transformers(hf_model, hf_folder, tmp_path):
    transformers = require_transformers()
    ours = emu3.load_decoder(hf_folder)
    emu3.save_decoder(ours, tmp_path, bos_id=1, eos_id=2, pad_id=0)
    reopened = transformers.Emu3ForCausalLM.from_pretrained(tmp_path).eval()
    tokens = mixed_tokens(2, 30, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(reopened(input_ids=tokens).logits.float(), ours(tokens), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emu3.load_decoder(tmp_path)(tokens), ours(tokens))


def test_our_composite_save_opens_in_transformers(hf_model, hf_folder, tmp_path):
    transformers = require_transformers()
    ours = emu3.load_decoder(hf_folder)
    vq = hf_model.model.vqmodel
    vq_config = {k: v for k, v in hf_model.config.vq_config.to_dict().items() if not k.startswith("_")}
    emu3.save_decoder(
        ours,
        tmp_path,
        bos_id=1,
        eos_id=2,
        pad_id=0,
        vq_state=vq.state_dict(),
        vq_config=vq_config,
        vocabulary_map=hf_model.config.vocabulary_map,
        max_shard_bytes=200_000,
    )
    assert (tmp_path / "model.safetensors.index.json").is_file()  # small shards force the sharded layout
    reopened = transformers.Emu3ForConditionalGeneration.from_pretrained(tmp_path).eval()
    tokens = mixed_tokens(1, 25, seed=3)
    torch.testing.assert_close(_hf_logits(reopened, tokens), _hf_logits(hf_model, tokens), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reopened.model.vqmodel.state_dict(), vq.state_dict())


def _write_baai_folder(hf_model, folder, *, drop=None, reshape=None, extra=None):
    """The same weights under BAAI remote-code names (`model.*`, `lm_head.weight`), in two shards."""
    text = hf_model.config.text_config
    state = {"lm_head.weight": hf_model.lm_head.weight}
    for k, v in hf_model.model.text_model.state_dict().items():
        state["model." + k] = v
    if drop:
        state.pop(drop)
    if reshape:
        state[reshape] = state[reshape][:-1]
    if extra:
        state[extra] = torch.zeros(2)
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for file, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, folder / file)
    weight_map = {k: f for f, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = {
        "architectures": ["Emu3ForCausalLM"],
        "model_type": "Emu3",
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "hidden_act": "silu",
        "vocab_size": text.vocab_size,
        "max_position_embeddings": 256,
        "rope_theta": 5e5,
        "rope_scaling": None,
        "rms_norm_eps": 1e-5,
        "attention_dropout": 0.1,
        "tie_word_embeddings": False,
        "image_area": 4096,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_baai_sharded_folder_loads_with_matching_logits(hf_model, tmp_path):
    ours = emu3.load_decoder(_write_baai_folder(hf_model, tmp_path), dtype=torch.float32)
    tokens = mixed_tokens(2, 33, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), _hf_logits(hf_model, tokens), atol=1e-5, rtol=1e-5)
    assert ours.cfg.dropout == 0.1 and ours.cfg.image_area == 4096


def test_bf16_load_converts_each_tensor(hf_folder):
    ours = emu3.load_decoder(hf_folder, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(
    "kind, message",
    [
        ("drop", "missing .*blocks.1.ffn.w_up.weight"),
        ("reshape", "shape of embed.weight"),
        ("extra", "unexpected .*model.layers.0.self_attn.q_norm.weight"),
    ],
)
def test_wrong_checkpoint_names_the_key(hf_model, tmp_path, kind, message):
    args = {
        "drop": {"drop": "model.layers.1.mlp.up_proj.weight"},
        "reshape": {"reshape": "model.embed_tokens.weight"},
        "extra": {"extra": "model.layers.0.self_attn.q_norm.weight"},
    }[kind]
    with pytest.raises(CheckpointError, match=message):
        emu3.load_decoder(_write_baai_folder(hf_model, tmp_path, **args))


def test_folders_that_are_not_emu3_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found|missing"):
        emu3.load_decoder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not an Emu3 decoder checkpoint"):
        emu3.load_decoder(tmp_path)


def test_pickle_weights_are_never_read(hf_folder, tmp_path):
    (tmp_path / "config.json").write_text((hf_folder / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="safetensors only"):
        emu3.load_decoder(tmp_path)
