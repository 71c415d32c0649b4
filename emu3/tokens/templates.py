"""Prompts and training layouts, composed from the grammar in format.py.

- Text-to-image prompts (BAAI `image_generation.py`, processor mode 'G'; spec 3.3):
      cond   = BOS prompt + " masterpiece, film grained, best quality." BOI "h*w" IMG
      uncond = BOS DEFAULT_NEGATIVE BOI "h*w" IMG
- Chat (spec 3.4). BAAI mode 'U' renders `You are a helpful assistant. USER: {image}{text}. ASSISTANT:`
  and transformers renders `{system} USER: {images}{text} ASSISTANT:`. We follow transformers: the
  user's content goes in verbatim (images where they stand), then " ASSISTANT:", so we never turn "?"
  into "?.". Ending the user text with "." gives BAAI's exact ids. Answers are encoded as " " + text
  (they follow "ASSISTANT:" in running text) and closed by EOS; the next user turn starts " USER: ".
- Pretraining layouts: BOS caption <block> EOS (generation direction) and BOS <block> caption EOS
  (understanding direction), as BAAI `emu3/train/datasets.py` / the paper template (spec 3.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from emu3.tokens.format import Image, Video, image_block, image_prefix, video_block
from emu3.tokens.text import TextTokenizer

IGNORE_INDEX = -100
DEFAULT_SYSTEM = "You are a helpful assistant."
POSITIVE_SUFFIX = " masterpiece, film grained, best quality."
DEFAULT_NEGATIVE = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry."
)


# ---------------------------------------------------------------- text to image


def generation_size(ratio: str = "1:1", image_area: int = 518400, factor: int = 8) -> tuple[int, int]:
    """Latent (h, w) for a "W:H" aspect ratio and a pixel area (BAAI `calculate_generate_size`).

    Python's round() (half to even) as in BAAI: 16:9 at 518400 gives h = round(67.5) = 68.
    """
    w, h = (int(x) for x in ratio.split(":"))
    scale = math.sqrt(image_area / (w * h))
    return round(h * scale / factor), round(w * scale / factor)


def t2i_prompt(
    prompt: str, height: int, width: int, tok: TextTokenizer, *, positive_suffix: str = POSITIVE_SUFFIX
) -> list[int]:
    """BOS prompt+suffix BOI "h*w" IMG: the conditional prompt; the grid is generated after it."""
    return [tok.special.bos, *tok.encode(prompt + positive_suffix), *image_prefix(height, width, tok)]


def t2i_negative_prompt(height: int, width: int, tok: TextTokenizer, negative: str = DEFAULT_NEGATIVE) -> list[int]:
    """BOS negative BOI "h*w" IMG: BAAI's unconditional prompt for classifier-free guidance."""
    return [tok.special.bos, *tok.encode(negative), *image_prefix(height, width, tok)]


# ---------------------------------------------------------------- pretraining layouts


def text_only(text: str, tok: TextTokenizer) -> list[int]:
    return [tok.special.bos, *tok.encode(text), tok.special.eos]


def caption_then_image(caption: str, codes: Tensor, tok: TextTokenizer) -> list[int]:
    """BOS caption <image block> EOS: learns text -> image."""
    return [tok.special.bos, *tok.encode(caption), *image_block(codes, tok), tok.special.eos]


def image_then_caption(codes: Tensor, caption: str, tok: TextTokenizer) -> list[int]:
    """BOS <image block> caption EOS: learns image -> text."""
    return [tok.special.bos, *image_block(codes, tok), *tok.encode(caption), tok.special.eos]


def caption_then_video(caption: str, codes: Tensor, tok: TextTokenizer) -> list[int]:
    return [tok.special.bos, *tok.encode(caption), *video_block(codes, tok), tok.special.eos]


def video_then_caption(codes: Tensor, caption: str, tok: TextTokenizer) -> list[int]:
    return [tok.special.bos, *video_block(codes, tok), *tok.encode(caption), tok.special.eos]


# ---------------------------------------------------------------- chat


@dataclass(frozen=True)
class Message:
    """One chat turn. User content mixes text and images/videos in order; assistant content is text."""

    role: Literal["user", "assistant"]
    content: tuple[str | Image | Video, ...]

    def __post_init__(self) -> None:
        content = (self.content,) if isinstance(self.content, str | Image | Video) else tuple(self.content)
        object.__setattr__(self, "content", content)
        if self.role not in ("user", "assistant"):
            raise ValueError(f"role must be 'user' or 'assistant', got {self.role!r}")
        if self.role == "assistant" and not all(isinstance(c, str) for c in content):
            raise ValueError("assistant content must be text")
        if not all(isinstance(c, str | Image | Video) for c in content):
            raise TypeError(f"content items must be str, Image or Video, got {[type(c).__name__ for c in content]}")


def chat_prompt(turns: Sequence[Message], tok: TextTokenizer, *, system: str = DEFAULT_SYSTEM) -> list[int]:
    """Ids up to and including the final " ASSISTANT:"; the last turn must be the user's."""
    if not turns or turns[-1].role != "user":
        raise ValueError("chat_prompt needs turns that end with a user message")
    return _render(turns, tok, system)[0]


def chat_example(
    turns: Sequence[Message], tok: TextTokenizer, *, system: str = DEFAULT_SYSTEM
) -> tuple[list[int], list[int]]:
    """(tokens, labels) for SFT; the last turn must be the assistant's.

    labels[i] == tokens[i] on assistant answers and their EOS, IGNORE_INDEX elsewhere; labels are
    aligned with tokens (the loss does the one-step shift).
    """
    if not turns or turns[-1].role != "assistant":
        raise ValueError("chat_example needs turns that end with an assistant message")
    tokens, trained = _render(turns, tok, system)
    return tokens, [t if keep else IGNORE_INDEX for t, keep in zip(tokens, trained, strict=True)]


def _render(turns: Sequence[Message], tok: TextTokenizer, system: str) -> tuple[list[int], list[bool]]:
    tokens, trained = [tok.special.bos], [False]
    pending = system  # text not yet encoded; adjacent text is encoded as one string

    def emit(ids: list[int], train: bool) -> None:
        tokens.extend(ids)
        trained.extend([train] * len(ids))

    for n, turn in enumerate(turns):
        if turn.role != ("user" if n % 2 == 0 else "assistant"):
            raise ValueError(f"turn {n} is {turn.role!r}; turns must alternate user, assistant, ...")
        if turn.role == "assistant":
            emit(tok.encode(pending), False)
            emit(tok.encode(" " + "".join(turn.content)) + [tok.special.eos], True)  # type: ignore[arg-type]
            pending = ""
            continue
        pending += " USER: " if pending or n else "USER: "
        for item in turn.content:
            if isinstance(item, str):
                pending += item
                continue
            emit(tok.encode(pending), False)
            emit(image_block(item.codes, tok) if isinstance(item, Image) else video_block(item.codes, tok), False)
            pending = ""
        pending += " ASSISTANT:"
    emit(tok.encode(pending), False)
    return tokens, trained
