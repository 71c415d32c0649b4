"""TextTokenizer: one interface over the BPE backends, with Emu3's special block handled here.

Ordinary text goes through the backend (bpe.py); special ids follow arithmetically from
`SpecialTokens` (ids `pad .. pad+210` for the 211 fixed names, then the visual block), so all
backends share one contract. Chat and image grammar live in format.py, not here.

Sources: BAAI `emu3/mllm/tokenization_emu3.py` (encode parses specials only when allowed, decode with
skip drops every id >= pad); spec section 3.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from emu3.tokens import bpe
from emu3.tokens.special import VISUAL_TEMPLATE, SpecialTokens, fixed_special_names, special_layout

_SPECIAL_LIKE = re.compile(r"<\|[a-z0-9_ ]{1,24}\|>")
_VISUAL_NAME = re.compile(r"<\|visual token (\d{6})\|>")


class BPEBackend(Protocol):
    n_vocab: int

    def encode(self, text: str) -> list[int]: ...
    def token_bytes(self, token_id: int) -> bytes: ...
    def token_id(self, piece: bytes) -> int | None: ...
    def save(self, folder: Path, special: SpecialTokens) -> None: ...


class TextTokenizer:
    """Text <-> vocab ids for the whole Emu3 vocabulary (ordinary BPE + the special block)."""

    def __init__(self, backend: BPEBackend, codebook_size: int) -> None:
        self.backend = backend
        self.special: SpecialTokens = special_layout(backend.n_vocab, codebook_size)
        self._fixed_names = fixed_special_names()
        self._fixed_ids = {name: self.special.pad + i for i, name in enumerate(self._fixed_names)}

    @property
    def vocab_size(self) -> int:
        return self.special.vocab_size

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Ids of `text`; no BOS/EOS is added. Special-token strings are parsed as specials when
        `allow_special`, and are an error otherwise (never split into ordinary pieces)."""
        ids: list[int] = []
        start = 0
        for match in _SPECIAL_LIKE.finditer(text):
            token_id = self._special_id(match.group())
            if token_id is None:
                continue
            if not allow_special:
                raise ValueError(
                    f"text contains the special token {match.group()!r} at character {match.start()}; "
                    "pass allow_special=True to encode it as that special token"
                )
            ids += self._ordinary(text[start : match.start()])
            ids.append(token_id)
            start = match.end()
        return ids + self._ordinary(text[start:])

    def decode(self, token_ids: Sequence[int] | Iterable[int], *, skip_special: bool = True) -> str:
        """Text of `token_ids`. With `skip_special`, every id >= pad (all specials, visual ones too) is dropped."""
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()  # a tensor
        out = bytearray()
        for token_id in token_ids:
            self._check_id(token_id)
            if token_id < self.special.pad:
                out += self.backend.token_bytes(token_id)
            elif not skip_special:
                out += self.special_name(token_id).encode()
        return out.decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int:
        """Id of a special name (e.g. `<|extra_203|>`) or of the exact text of one ordinary token."""
        token_id = self._special_id(token)
        if token_id is None:
            token_id = self.backend.token_id(token.encode("utf-8"))
        if token_id is None:
            raise ValueError(f"{token!r} is neither a special token nor a single token of the vocabulary")
        return token_id

    def id_to_token(self, token_id: int) -> str:
        """The special name, or the ordinary token's text (bytes that are not valid UTF-8 become U+FFFD)."""
        self._check_id(token_id)
        if token_id >= self.special.pad:
            return self.special_name(token_id)
        return self.backend.token_bytes(token_id).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of an ordinary token."""
        self._check_id(token_id)
        if token_id >= self.special.pad:
            raise ValueError(f"id {token_id} is the special token {self.special_name(token_id)}, not text bytes")
        return self.backend.token_bytes(token_id)

    def special_name(self, token_id: int) -> str:
        """The string of a special id, e.g. `<|image start|>` or `<|visual token 000017|>`."""
        offset = token_id - self.special.pad
        if 0 <= offset < len(self._fixed_names):
            return self._fixed_names[offset]
        code = token_id - self.special.visual_start
        if not 0 <= code < self.special.codebook_size:
            raise ValueError(f"id {token_id} is not a special token of this vocabulary")
        return VISUAL_TEMPLATE.format(code)

    def save(self, folder: str | Path) -> None:
        """Write the tokenizer's files in its backend's own format (load_text_tokenizer reads them back)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(folder, self.special)

    # ---------------------------------------------------------------- helpers

    def _ordinary(self, text: str) -> list[int]:
        ids = self.backend.encode(text) if text else []
        if ids and max(ids) >= self.special.pad:  # a backend must never produce specials from plain text
            raise ValueError(f"BPE backend returned a special id for ordinary text {text[:40]!r}")
        return ids

    def _special_id(self, name: str) -> int | None:
        if name in self._fixed_ids:
            return self._fixed_ids[name]
        match = _VISUAL_NAME.fullmatch(name)
        if match and int(match.group(1)) < self.special.codebook_size:
            return self.special.visual_start + int(match.group(1))
        return None

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary [0, {self.vocab_size})")


def load_text_tokenizer(folder: str | Path) -> TextTokenizer:
    """Read a tokenizer folder. Looked for, in this order: `emu3_tokenizer.json` + `tokenizer.json` (ours),
    `emu3.tiktoken` + `emu3_vision_tokens.txt` (BAAI), `tokenizer.json` (transformers-converted Emu3)."""
    folder = Path(folder)
    if (folder / bpe.DESCRIPTOR_FILE).is_file():
        backend, codebook_size = bpe.read_trained_folder(folder)
    elif (folder / bpe.TIKTOKEN_FILE).is_file() and (folder / bpe.VISION_TOKENS_FILE).is_file():
        backend, codebook_size = bpe.read_tiktoken_folder(folder)
    elif (folder / bpe.HF_FILE).is_file():
        backend, codebook_size = bpe.read_hf_folder(folder)
    else:
        raise FileNotFoundError(
            f"{folder} holds no Emu3 text tokenizer; looked for {bpe.DESCRIPTOR_FILE} + {bpe.HF_FILE} (ours), "
            f"{bpe.TIKTOKEN_FILE} + {bpe.VISION_TOKENS_FILE} (BAAI), or {bpe.HF_FILE} (transformers)"
        )
    return TextTokenizer(backend, codebook_size)


def train_text_tokenizer(texts: Iterable[str], vocab_size: int, codebook_size: int) -> TextTokenizer:
    """Train a byte-level BPE with `vocab_size` ordinary tokens; the Emu3 special block follows it."""
    return TextTokenizer(bpe.train_bpe(texts, vocab_size), codebook_size)
