"""Supervised fine-tuning: next-token training from a trained model on an SFT corpus.

Conversations carry their prompt mask in the corpus (emu3.tokens.templates.chat_example), so SFT
is the pretraining loop started from `init=` on those examples; `vision_only=true` is the paper's
quality fine-tuning for generation (loss on visual tokens only, spec 5.2).

    emu3 sft configs/sft/tiny.yaml init=runs/pretrain/model data.corpus=runs/tokens data.kinds=[qa]
"""

from __future__ import annotations

from pathlib import Path

from emu3.recipes import pretrain
from emu3.recipes.common import TrainConfig


def main(cfg: TrainConfig) -> Path:
    if not cfg.init:
        raise SystemExit("emu3 sft needs init=MODEL_FOLDER (the model to fine-tune)")
    return pretrain.main(cfg)
