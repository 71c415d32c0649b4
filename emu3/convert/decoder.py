"""Load and save the Emu3 decoder in the official checkpoint formats.

This is the only module that knows the decoder's foreign parameter names. Formats read:

* BAAI remote code (`Emu3ForCausalLM`, `model_type: "Emu3"`): keys `model.layers.N.self_attn.q_proj.weight`,
  ..., `lm_head.weight`; usually sharded with `model.safetensors.index.json` (spec 2.7).
* transformers `Emu3ForCausalLM` (`model_type: "emu3_text_model"`): the same key names.
* transformers `Emu3ForConditionalGeneration` (`model_type: "emu3"`): as written by `save_pretrained`
  the keys are `text_model.model.*`, `text_model.lm_head.weight` and `vqmodel.*`; the in-memory names
  `model.text_model.*`, `lm_head.weight`, `model.vqmodel.*` are accepted too. The VQ part is skipped
  here (`emu3.load_vision_tokenizer` reads it).

Saving writes the transformers layout, so a model trained here opens in transformers: the
`Emu3ForCausalLM` layout for a decoder alone, the `Emu3ForConditionalGeneration` layout when a
vision tokenizer and the vocabulary map are given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from emu3.convert.safetensors_io import (
    CheckpointError,
    check_state_dict,
    iter_tensors,
    list_keys,
    read_json,
    save_tensors_atomic,
    write_json_atomic,
)
from emu3.model.config import DecoderConfig
from emu3.model.decoder import Emu3Decoder
from emu3.model.init import meta_decoder

MAX_SHARD_BYTES = 4 * 1024**3

# our name (with {i} for the layer) <-> Llama-style name under the text-model prefix
_LAYER_NAMES = {
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "ffn.w_gate.weight": "mlp.gate_proj.weight",
    "ffn.w_up.weight": "mlp.up_proj.weight",
    "ffn.w_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_FOREIGN_LAYER = {v: k for k, v in _LAYER_NAMES.items()}
_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)")


# ---------------------------------------------------------------- config


def read_decoder_config(folder: str | Path) -> tuple[DecoderConfig, dict[str, Any]]:
    """DecoderConfig from a checkpoint's config.json, and the format facts (`layout`, special ids)."""
    raw = read_json(Path(folder) / "config.json")
    model_type = raw.get("model_type")
    if model_type == "emu3":
        text = raw.get("text_config")
        if not isinstance(text, dict):
            raise CheckpointError(f"{folder}/config.json: model_type 'emu3' without a text_config")
        layout = "hf-composite"
    elif model_type in ("Emu3", "emu3_text_model"):
        text, layout = raw, "causal-lm"
    else:
        raise CheckpointError(
            f"{folder} is not an Emu3 decoder checkpoint: config.json has model_type {model_type!r}; expected "
            "'Emu3' (BAAI Emu3-Gen/Chat/Stage1), 'emu3' (transformers Emu3ForConditionalGeneration) or "
            "'emu3_text_model' (transformers Emu3ForCausalLM)"
        )
    return _text_config_to_ours(text, folder), {
        "layout": layout,
        "bos_id": text.get("bos_token_id"),
        "eos_id": text.get("eos_token_id"),
        "pad_id": text.get("pad_token_id"),
    }


def _text_config_to_ours(text: dict[str, Any], folder: str | Path) -> DecoderConfig:
    def need(key: str) -> Any:
        if key not in text:
            raise CheckpointError(f"{folder}/config.json: missing {key!r}")
        return text[key]

    if text.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{folder}: hidden_act {text['hidden_act']!r} is not supported (Emu3 uses silu)")
    if text.get("attention_bias") or text.get("mlp_bias"):
        raise CheckpointError(f"{folder}: attention/MLP biases are not part of Emu3 and are not supported")
    if text.get("tie_word_embeddings"):
        raise CheckpointError(f"{folder}: tied embeddings are not supported (Emu3's lm_head is untied)")
    rope = text.get("rope_parameters") or {}
    scaling = text.get("rope_scaling")
    kind = rope.get("rope_type") or (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if kind != "default":
        raise CheckpointError(f"{folder}: RoPE scaling {kind!r} is not supported (Emu3 uses plain RoPE)")
    theta = rope.get("rope_theta", text.get("rope_theta", 1_000_000.0))
    pad = text.get("pad_token_id")
    try:
        return DecoderConfig(
            vocab_size=need("vocab_size"),
            dim=need("hidden_size"),
            n_layers=need("num_hidden_layers"),
            n_heads=need("num_attention_heads"),
            n_kv_heads=text.get("num_key_value_heads") or need("num_attention_heads"),
            ffn_dim=need("intermediate_size"),
            max_seq_len=need("max_position_embeddings"),
            rope_theta=float(theta),
            norm_eps=float(text.get("rms_norm_eps", 1e-5)),
            dropout=float(text.get("attention_dropout", 0.0)),
            pad_id=pad if isinstance(pad, int) and 0 <= pad < text["vocab_size"] else None,
            image_area=int(text.get("image_area", 518_400)),
        )
    except ValueError as err:
        raise CheckpointError(f"{folder}/config.json does not describe a valid decoder: {err}") from err


def decoder_config_to_hf(cfg: DecoderConfig, *, bos_id: int, eos_id: int, pad_id: int | None) -> dict[str, Any]:
    """The transformers `Emu3TextConfig` fields for our config (plus BAAI's `image_area`)."""
    return {
        "model_type": "emu3_text_model",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_dropout": cfg.dropout,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "initializer_range": 0.02,
        "image_area": cfg.image_area,
    }


# ---------------------------------------------------------------- names


def _text_prefixes(keys: list[str]) -> tuple[str, str, tuple[str, ...]]:
    """(body prefix, lm_head key, ignored VQ prefixes) of the key family used in a checkpoint."""
    if any(k.startswith("text_model.model.") for k in keys):
        return "text_model.model.", "text_model.lm_head.weight", ("vqmodel.",)
    if any(k.startswith("model.text_model.") for k in keys):
        return "model.text_model.", "lm_head.weight", ("model.vqmodel.",)
    return "model.", "lm_head.weight", ("vqmodel.", "model.vqmodel.")


def foreign_to_ours(key: str, body: str, head: str) -> str | None:
    """Our parameter name for a checkpoint key, or None if the key is not a decoder parameter."""
    if key == head:
        return "lm_head.weight"
    if not key.startswith(body):
        return None
    rest = key[len(body) :]
    if rest == "embed_tokens.weight":
        return "embed.weight"
    if rest == "norm.weight":
        return "norm.weight"
    m = _LAYER_RE.fullmatch(rest)
    if m and m.group(2) in _FOREIGN_LAYER:
        return f"blocks.{m.group(1)}.{_FOREIGN_LAYER[m.group(2)]}"
    return None


def ours_to_foreign(name: str, body: str = "model.", head: str = "lm_head.weight") -> str:
    if name == "lm_head.weight":
        return head
    if name == "embed.weight":
        return body + "embed_tokens.weight"
    if name == "norm.weight":
        return body + "norm.weight"
    _, layer, rest = name.split(".", 2)
    return f"{body}layers.{layer}.{_LAYER_NAMES[rest]}"


# ---------------------------------------------------------------- load


def load_decoder(
    folder: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> Emu3Decoder:
    """Load an Emu3 decoder from a local checkpoint folder (any format above), in eval mode.

    Strict: a missing, unexpected or mis-shaped tensor is an error naming the key. The model is
    built on the meta device and each tensor is read once, shard by shard, converted to `dtype`
    (None keeps the stored dtype) and moved to `device`, so peak memory is one copy of the weights.
    """
    folder = Path(folder)
    cfg, _ = read_decoder_config(folder)
    where = list_keys(folder)
    body, head, vq_prefixes = _text_prefixes(list(where))
    mapping: dict[str, str] = {}
    unexpected = []
    for key in where:
        ours = foreign_to_ours(key, body, head)
        if ours is not None:
            mapping[key] = ours
        elif not key.startswith(vq_prefixes):
            unexpected.append(key)
    model = meta_decoder(cfg)
    expected = {n: tuple(p.shape) for n, p in model.state_dict().items()}
    found = {ours: _stored_shape(where[key], key) for key, ours in mapping.items()}
    found.update({k: () for k in unexpected})  # reported by name as unexpected
    check_state_dict(expected, found, source=str(folder))

    state: dict[str, torch.Tensor] = {}
    for key, tensor in iter_tensors(folder, keep=mapping.__contains__):
        state[mapping[key]] = tensor.to(device=device, dtype=dtype or tensor.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _stored_shape(path: Path, key: str) -> tuple[int, ...]:
    with safe_open(str(path), framework="pt") as f:
        return tuple(f.get_slice(key).get_shape())


# ---------------------------------------------------------------- save


def vocabulary_map(special_names: dict[int, str], visual_start: int, codebook_size: int) -> dict[str, int]:
    """The `vocabulary_map` transformers' Emu3Config wants: special strings -> ids, with its renaming
    of `<|extra_0|>` to the placeholder `<image>` (spec 3.1). `special_names` maps non-visual ids."""
    vocab = {name: i for i, name in special_names.items()}
    if "<|extra_0|>" in vocab:
        vocab["<image>"] = vocab.pop("<|extra_0|>")
    vocab.update({f"<|visual token {k:06d}|>": visual_start + k for k in range(codebook_size)})
    return vocab


def save_decoder(
    model: Emu3Decoder,
    folder: str | Path,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int | None,
    vq_state: dict[str, torch.Tensor] | None = None,
    vq_config: dict[str, Any] | None = None,
    vocabulary_map: dict[str, int] | None = None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """Write `model` in the transformers layout (config.json + safetensors, sharded when large).

    With `vq_state` (VQ tensors under transformers names, without prefix), `vq_config` (transformers
    `Emu3VQVAEConfig` fields) and `vocabulary_map` (token string -> id, as the tokenizer has it), the
    folder is a full `Emu3ForConditionalGeneration`; otherwise an `Emu3ForCausalLM`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text_cfg = decoder_config_to_hf(model.cfg, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    composite = vq_state is not None
    if composite != (vq_config is not None) or composite != (vocabulary_map is not None):
        raise ValueError("a composite save needs all three of vq_state, vq_config and vocabulary_map")
    body, head = ("text_model.model.", "text_model.lm_head.weight") if composite else ("model.", "lm_head.weight")
    cast: Callable[[torch.Tensor], torch.Tensor] = lambda t: t.detach().to("cpu", dtype or t.dtype)  # noqa: E731
    tensors = {ours_to_foreign(n, body, head): cast(t) for n, t in model.state_dict().items()}
    if composite:
        tensors.update({"vqmodel." + k: v.detach().cpu() for k, v in vq_state.items()})
        config = {
            "architectures": ["Emu3ForConditionalGeneration"],
            "model_type": "emu3",
            "text_config": text_cfg,
            "vq_config": {"model_type": "emu3_vqgan", **vq_config},
            "vocabulary_map": vocabulary_map,
            "image_token_id": vocabulary_map.get("<image>"),
            "tie_word_embeddings": False,
        }
    else:
        config = {"architectures": ["Emu3ForCausalLM"], **text_cfg}
    dtype_name = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    config["dtype"] = dtype_name
    _write_shards(tensors, folder, max_shard_bytes)
    write_json_atomic(config, folder / "config.json")
    write_json_atomic(
        {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}, folder / "generation_config.json"
    )
    return folder


def _write_shards(tensors: dict[str, torch.Tensor], folder: Path, max_bytes: int) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    for stale in list(folder.glob("model*.safetensors")) + list(folder.glob("model.safetensors.index.json")):
        stale.unlink()
    if len(shards) == 1:
        save_tensors_atomic(shards[0], folder / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_tensors_atomic(shard, folder / name)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    write_json_atomic(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, folder / "model.safetensors.index.json"
    )
