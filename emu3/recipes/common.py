"""Pieces every language-model recipe shares: configs, model/tokenizer set-up, autocast, export.

The loops themselves stay in the recipe files (pretrain.py, dpo.py), readable top to bottom.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from emu3.convert.decoder import load_decoder, save_decoder, vocabulary_map
from emu3.model.config import DecoderConfig
from emu3.model.decoder import Emu3Decoder
from emu3.model.init import build_decoder
from emu3.tokens.text import TextTokenizer, load_text_tokenizer
from emu3.train.losses import IGNORE, VISION, LossOutput, LossWeights, next_token_loss, token_classes
from emu3.train.optim import OptimConfig


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder trained from scratch (the vocabulary comes from the tokenizer)."""

    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 128
    max_seq_len: int = 512
    rope_theta: float = 10_000.0
    dropout: float = 0.0
    image_area: int = 64 * 64


@dataclass(frozen=True)
class DataConfig:
    corpus: str = ""  # a folder written by `emu3 pretokenize`
    kinds: tuple[str, ...] = ()  # example kinds to train on (empty = all); one named n times is drawn n times as often
    seq_len: int = 256
    batch_size: int = 8  # rows per optimiser step (global, over all processes)
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Next-token training: pretraining and supervised fine-tuning (quality tuning)."""

    out: str = "runs/pretrain"
    tokenizer: str = ""  # folder with the text tokenizer (defaults to `init` when that is set)
    init: str | None = None  # start from this model folder instead of a fresh model
    vq: str | None = None  # vision tokenizer folder saved beside the result (makes it a full model folder)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    vision_only: bool = False  # QFT: loss on visual tokens only (spec 5.2)
    steps: int = 100
    save_every: int = 50
    log_every: int = 10
    resume: bool = True  # continue from the run's latest checkpoint if there is one
    bf16: bool = True  # bf16 autocast where bf16 is fast (GPUs, AVX-512 CPUs; model/precision.py), else fp32
    activation_checkpointing: bool = False
    # torch.compile each decoder Block in place (`block.compile()`: state_dict keys unchanged, no
    # `_orig_mod.`). Per block, compile stays short (one graph, reused by every layer of the same
    # shape) and composes with activation checkpointing and FSDP2 (blocks are compiled before each is
    # wrapped with `fully_shard`, whose hooks stay outside the graph). The first step pays the
    # compilation (tens of seconds on CPU, much less with a warm inductor cache); opt-in.
    compile: bool = False
    dist: str = "none"  # none | ddp | fsdp (under torchrun)
    device: str = "cpu"
    threads: int = 0  # torch threads per process; 0 = leave torch's default
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.save_every <= 0:
            raise ValueError("steps and save_every must be positive")
        if self.dist not in ("none", "ddp", "fsdp"):
            raise ValueError(f"dist must be none, ddp or fsdp, got {self.dist!r}")
        if not self.data.corpus:
            raise ValueError("data.corpus is required (a folder written by `emu3 pretokenize`)")
        if not (self.tokenizer or self.init):
            raise ValueError("set tokenizer= (a tokenizer folder) or init= (a model folder)")


def tokenizer_for(cfg: TrainConfig) -> TextTokenizer:
    return load_text_tokenizer(cfg.tokenizer or cfg.init)


def model_for(cfg: TrainConfig, tok: TextTokenizer) -> Emu3Decoder:
    if cfg.init:
        model = load_decoder(cfg.init, dtype=torch.float32, device=cfg.device)
        if model.cfg.vocab_size < tok.vocab_size:
            raise ValueError(f"model {cfg.init} has {model.cfg.vocab_size} ids, the tokenizer {tok.vocab_size}")
    else:
        m = cfg.model
        dcfg = DecoderConfig(
            vocab_size=tok.vocab_size, dim=m.dim, n_layers=m.n_layers, n_heads=m.n_heads, n_kv_heads=m.n_kv_heads,
            ffn_dim=m.ffn_dim, max_seq_len=m.max_seq_len, rope_theta=m.rope_theta, dropout=m.dropout,
            pad_id=tok.special.pad, image_area=m.image_area,
        )  # fmt: skip
        model = build_decoder(dcfg, seed=cfg.seed, device=cfg.device)
    model.activation_checkpointing = cfg.activation_checkpointing
    if cfg.compile:
        compile_blocks(model)
    return model.train()


def compile_blocks(model: Emu3Decoder, **options) -> Emu3Decoder:
    """torch.compile every decoder Block in place (`nn.Module.compile`, so the state_dict keys stay
    as they are) and return the model. `options` go to torch.compile (e.g. backend="aot_eager").

    Compile before wrapping with FSDP2 (`wrap_model`), as the recipes do: `fully_shard` then hooks
    the compiled blocks and its hooks run outside the compiled graph."""
    for block in model.blocks:
        block.compile(**options)
    return model


class LMObjective(nn.Module):
    """The training step's forward: decoder hidden states -> weighted next-token loss.

    The loss lives here, in the recipe layer, not in the decoder; wrapping this module (rather than
    the decoder) with FSDP keeps the output projection unsharded while the loss uses it."""

    def __init__(self, model: Emu3Decoder, tok: TextTokenizer, weights: LossWeights, vision_only: bool = False):
        super().__init__()
        self.model, self.weights, self.vision_only = model, weights, vision_only
        self.visual = (tok.special.visual_start, tok.special.codebook_size)

    def forward(self, tokens: Tensor, input_pos: Tensor, labels: Tensor) -> LossOutput:
        classes = token_classes(labels, *self.visual)
        if self.vision_only:
            labels = labels.masked_fill(classes != VISION, IGNORE)
        hidden = self.model.hidden(tokens, input_pos)
        return next_token_loss(hidden, self.model.lm_head.weight, labels, classes, self.weights)


def check_device(device: str) -> None:
    """A clear error, before any work, for a device this machine cannot compute on."""
    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r}: not a torch device ({err})") from None
    if parsed.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: this machine has no CUDA GPU that torch can use (use device=cpu)")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) here")


def autocast(enabled: bool, device: str):
    """bf16 autocast when `enabled` and bf16 is fast on `device` (model/precision.py); else fp32."""
    from emu3.model.precision import bf16_is_fast

    if not (enabled and bf16_is_fast(device)):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def export_model(model: Emu3Decoder, tok: TextTokenizer, folder: str | Path, vq_folder: str | None,
                 pipeline_from: str | None = None) -> Path:  # fmt: skip
    """Save the trained decoder as a model folder: with the VQ (a full Emu3ForConditionalGeneration
    folder that `Pipeline.load` and `emu3 generate` use) when `vq_folder` is given, else decoder only."""
    folder = Path(folder)
    s = tok.special
    kwargs = {}
    if vq_folder is None and pipeline_from and _holds_vq(pipeline_from):
        vq_folder = pipeline_from  # keep the VQ of the model we started from
    if vq_folder:
        from emu3.convert.vq import load_vision_tokenizer, vq_config_to_hf, vq_state_dict_to_hf

        vq = load_vision_tokenizer(vq_folder)
        names = {i: tok.special_name(i) for i in range(s.pad, s.visual_start)}
        kwargs = dict(vq_state=vq_state_dict_to_hf(vq), vq_config=vq_config_to_hf(vq.cfg),
                      vocabulary_map=vocabulary_map(names, s.visual_start, s.codebook_size))  # fmt: skip
    save_decoder(model, folder, bos_id=s.bos, eos_id=s.eos, pad_id=s.pad, **kwargs)
    tok.save(folder)
    if pipeline_from and (Path(pipeline_from) / "emu3_pipeline.json").is_file():
        (folder / "emu3_pipeline.json").write_text((Path(pipeline_from) / "emu3_pipeline.json").read_text())
    return folder


def _holds_vq(folder: str | Path) -> bool:
    import json

    path = Path(folder) / "config.json"
    return path.is_file() and json.loads(path.read_text()).get("model_type") == "emu3"
