"""Weight initialisation and meta-device construction.

NOTE: a model built on the meta device has no storage; it must be filled with `load_state_dict(...,
assign=True)` (checkpoint loading) or `materialize` (fresh training) before use.
"""

from __future__ import annotations

import torch
from torch import nn

from emu3.model.config import DecoderConfig
from emu3.model.decoder import Emu3Decoder
from emu3.model.layers import RMSNorm


def init_weights(model: Emu3Decoder, std: float = 0.02, *, generator: torch.Generator | None = None) -> None:
    """Normal(0, std) for linear and embedding weights, ones for norms, zero for the padding row
    (the transformers initialisation with initializer_range=0.02)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                module.weight.normal_(0.0, std, generator=generator)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
        if model.cfg.pad_id is not None:
            model.embed.weight[model.cfg.pad_id].zero_()


def build_decoder(
    cfg: DecoderConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Emu3Decoder:
    """A freshly initialised decoder (seeded, so the same seed gives the same weights)."""
    with torch.device("meta"):
        model = Emu3Decoder(cfg)
    model = model.to_empty(device=device)
    init_weights(model, generator=torch.Generator(device=device).manual_seed(seed))
    return model.to(dtype)


def meta_decoder(cfg: DecoderConfig) -> Emu3Decoder:
    """A decoder without storage, for counting parameters or loading a checkpoint with assign=True."""
    with torch.device("meta"):
        return Emu3Decoder(cfg)
