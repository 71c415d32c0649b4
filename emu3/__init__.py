"""emu3: BAAI's Emu3 in pure PyTorch — text, images and video as one stream of discrete tokens.

The public API is re-exported here lazily, so `import emu3` stays light:

    import emu3
    model = emu3.load_decoder("path/to/Emu3-Gen", dtype=torch.bfloat16)
    vq = emu3.load_vision_tokenizer("path/to/Emu3-VisionTokenizer")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "DecoderConfig": "emu3.model.config",
    "Emu3Decoder": "emu3.model.decoder",
    "KVCache": "emu3.model.kv_cache",
    "load_decoder": "emu3.convert.decoder",
    "save_decoder": "emu3.convert.decoder",
    "VQConfig": "emu3.vision.config",
    "VQModel": "emu3.vision.vq",
    "load_vision_tokenizer": "emu3.convert.vq",
    "SpecialTokens": "emu3.tokens.special",
    "TextTokenizer": "emu3.tokens.text",
    "load_text_tokenizer": "emu3.tokens.text",
    "VisualVocab": "emu3.tokens.visual_vocab",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emu3' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
