"""Load and save the Emu3 vision tokenizer in the official formats; the only module that knows the
VQ's foreign parameter names.

Our names are BAAI's names (`encoder.down.3.attn.0.q.weight`, `decoder.mid.attn_1.norm...`) except
that attention projections are 2-D linear weights (BAAI stores them as 1x1 convolutions). Read:

* BAAI `Emu3VisionVQ` folder (`model_type: "Emu3VisionVQ"`), 4-D q/k/v/proj_out weights;
* transformers `Emu3VQVAE` save (`model_type: "emu3_vqgan"`): `down_block.down`, `middle_block`,
  `up_block.up`, `q_proj`/`out_proj`, `attn_norms.N` / `attn_norm` (the converter's renames, spec 2.7);
* the `vqmodel.*` (or `model.vqmodel.*`) part of a transformers `Emu3ForConditionalGeneration`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from emu3.convert.safetensors_io import (
    CheckpointError,
    check_state_dict,
    iter_tensors,
    list_keys,
    read_json,
    save_tensors_atomic,
    write_json_atomic,
)
from emu3.vision.config import VQConfig
from emu3.vision.vq import VQModel, cast_vq

# transformers name pattern -> ours, applied in order
_FROM_HF = [
    (re.compile(r"\.down_block\.down\."), ".down."),
    (re.compile(r"\.up_block\.up\."), ".up."),
    (re.compile(r"\.middle_block\.attn_norm\."), ".mid.attn_1.norm."),
    (re.compile(r"\.middle_block\."), ".mid."),
    (re.compile(r"\.attn_norms\.(\d+)\."), r".attn.\1.norm."),
    (re.compile(r"\.q_proj\."), ".q."),
    (re.compile(r"\.k_proj\."), ".k."),
    (re.compile(r"\.v_proj\."), ".v."),
    (re.compile(r"\.out_proj\."), ".proj_out."),
]
_TO_HF = [
    (re.compile(r"\.down\.(\d+)\."), r".down_block.down.\1."),
    (re.compile(r"\.up\.(\d+)\."), r".up_block.up.\1."),
    (re.compile(r"\.mid\.attn_1\.norm\."), ".middle_block.attn_norm."),
    (re.compile(r"\.mid\."), ".middle_block."),
    (re.compile(r"\.attn\.(\d+)\.norm\."), r".attn_norms.\1."),
    (re.compile(r"\.q\."), ".q_proj."),
    (re.compile(r"\.k\."), ".k_proj."),
    (re.compile(r"\.v\."), ".v_proj."),
    (re.compile(r"\.proj_out\."), ".out_proj."),
]
_ATTN_WEIGHT = re.compile(r"\.(q|k|v|proj_out)\.weight$")


def _rename(name: str, rules) -> str:
    name = "." + name
    for pattern, repl in rules:
        name = pattern.sub(repl, name)
    return name[1:]


# ---------------------------------------------------------------- config


def read_vq_config(folder: str | Path) -> tuple[VQConfig, str, str]:
    """(config, format, key prefix) of a folder holding a VQ in any supported format."""
    raw = read_json(Path(folder) / "config.json")
    kind = raw.get("model_type")
    if kind == "emu3":
        if not isinstance(raw.get("vq_config"), dict):
            raise CheckpointError(f"{folder}/config.json: model_type 'emu3' without a vq_config")
        return _from_hf_config(raw["vq_config"], folder), "hf", "vqmodel."
    if kind == "emu3_vqgan":
        return _from_hf_config(raw, folder), "hf", ""
    if kind == "Emu3VisionVQ":
        return _from_baai_config(raw, folder), "baai", ""
    raise CheckpointError(
        f"{folder} is not an Emu3 vision tokenizer: config.json has model_type {kind!r}; expected 'Emu3VisionVQ' "
        "(BAAI Emu3-VisionTokenizer), 'emu3_vqgan' (transformers Emu3VQVAE) or 'emu3' (a full transformers Emu3)"
    )


def _build(folder, **kwargs) -> VQConfig:
    try:
        return VQConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{folder}/config.json does not describe a valid vision tokenizer: {err}") from err


def _from_hf_config(raw: dict[str, Any], folder) -> VQConfig:
    if raw.get("double_latent"):
        raise CheckpointError(f"{folder}: double_latent=true is not used by Emu3 and is not supported")
    return _build(
        folder,
        codebook_size=raw["codebook_size"],
        embed_dim=raw["embed_dim"],
        z_channels=raw["latent_channels"],
        in_channels=raw.get("in_channels", 3),
        out_channels=raw.get("out_channels", 3),
        ch=raw["base_channels"],
        ch_mult=tuple(raw["channel_multiplier"]),
        num_res_blocks=raw["num_res_blocks"],
        attn_levels=tuple(raw.get("attn_resolutions") or ()),
        temporal_downsample_factor=raw["temporal_downsample_factor"],
        tile_size=int(raw.get("tile_size", 0)),
        tile_videos=bool(raw.get("tile_videos", True)),
    )


def _from_baai_config(raw: dict[str, Any], folder) -> VQConfig:
    if raw.get("double_z"):
        raise CheckpointError(f"{folder}: double_z=true is not used by Emu3 and is not supported")
    return _build(
        folder,
        codebook_size=raw["codebook_size"],
        embed_dim=raw["embed_dim"],
        z_channels=raw["z_channels"],
        in_channels=raw.get("in_channels", 3),
        out_channels=raw.get("out_channels", 3),
        ch=raw["ch"],
        ch_mult=tuple(raw["ch_mult"]),
        num_res_blocks=raw["num_res_blocks"],
        attn_levels=tuple(raw.get("attn_resolutions") or ()),
        temporal_downsample_factor=raw["temporal_downsample_factor"],
        dropout=float(raw.get("dropout", 0.0)),
    )


def vq_config_to_hf(cfg: VQConfig) -> dict[str, Any]:
    """transformers `Emu3VQVAEConfig` fields, plus our `tile_size` for a tiling tokenizer (absent: whole images)
    and `tile_videos` when it tiles images only (absent: videos too)."""
    fields = {
        "model_type": "emu3_vqgan", "codebook_size": cfg.codebook_size, "embed_dim": cfg.embed_dim,
        "latent_channels": cfg.z_channels, "double_latent": False, "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels, "temporal_downsample_factor": cfg.temporal_downsample_factor,
        "base_channels": cfg.ch, "channel_multiplier": list(cfg.ch_mult), "num_res_blocks": cfg.num_res_blocks,
        "attn_resolutions": list(cfg.attn_levels), "hidden_size": cfg.attn_width, "num_attention_heads": 1,
        "attention_dropout": 0.0,
    }  # fmt: skip
    tiles = {"tile_size": cfg.tile_size} | ({"tile_videos": False} if not cfg.tile_videos else {})
    return fields | (tiles if cfg.tile_size else {})


# ---------------------------------------------------------------- load


def load_vision_tokenizer(
    folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> VQModel:
    """Load the VQ from a local folder (any format above), strictly, in eval mode.

    fp32 by default, as the official scripts run it (bf16 can change codes); BatchNorm stays fp32."""
    folder = Path(folder)
    cfg, fmt, prefix = read_vq_config(folder)
    where = list_keys(folder)
    if fmt == "hf" and prefix and not any(k.startswith(prefix) for k in where):
        prefix = "model.vqmodel."  # the in-memory names of Emu3ForConditionalGeneration
    mapping: dict[str, str] = {}
    unexpected = []
    for key in where:
        if not key.startswith(prefix):
            if not prefix:
                unexpected.append(key)
            continue  # the decoder's tensors in a full Emu3 folder
        rest = key[len(prefix) :]
        mapping[key] = _rename(rest, _FROM_HF) if fmt == "hf" else rest
    with torch.device("meta"):
        model = VQModel(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for key, tensor in iter_tensors(folder, keep=mapping.__contains__):
        name = mapping[key]
        if fmt == "baai" and _ATTN_WEIGHT.search(name) and tensor.ndim == 4:
            tensor = tensor.flatten(1)  # 1x1 conv -> linear
        state[name] = tensor
    found = {k: tuple(v.shape) for k, v in state.items()}
    found.update({k: () for k in unexpected})
    check_state_dict(expected, found, source=str(folder))
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True, assign=True)
    return cast_vq(model, dtype).eval()


# ---------------------------------------------------------------- save


def vq_state_dict_to_hf(model: VQModel) -> dict[str, torch.Tensor]:
    """Our state dict under transformers `Emu3VQVAE` names (no prefix), fp32 BatchNorm kept."""
    return {_rename(k, _TO_HF): v.detach().cpu() for k, v in model.state_dict().items()}


def save_vision_tokenizer(model: VQModel, folder: str | Path) -> Path:
    """Write a standalone transformers `Emu3VQVAE` folder (config.json + model.safetensors)."""
    folder = Path(folder)
    save_tensors_atomic(vq_state_dict_to_hf(model), folder / "model.safetensors")
    write_json_atomic({"architectures": ["Emu3VQVAE"], **vq_config_to_hf(model.cfg)}, folder / "config.json")
    return folder
