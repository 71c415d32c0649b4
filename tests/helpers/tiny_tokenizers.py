"""Tiny Emu3 text tokenizers built inside the test session (no downloads), for any test folder.

    from tests.helpers.tiny_tokenizers import tiny_text_tokenizer
    tok = tiny_text_tokenizer()            # BAAI-format backend, 64 visual codes, in memory
    tok = tiny_trained_tokenizer()         # our trainable backend, same special layout
    tok.special.bos, tok.special.visual_start, tok.vocab_size

`write_baai_folder` / `write_hf_folder` put the same vocabulary on disk in BAAI's format
(emu3.tiktoken + emu3_vision_tokens.txt) or in the transformers-converted format (tokenizer.json).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from functools import cache
from pathlib import Path

import regex

from emu3.tokens.bpe import QWEN_PATTERN, TiktokenBPE
from emu3.tokens.special import VISUAL_TEMPLATE, fixed_special_names
from emu3.tokens.text import TextTokenizer, train_text_tokenizer

CODEBOOK_SIZE = 64
N_MERGES = 200
HAND_MERGES = (b"90", b"12", b"123")

CORPUS = (
    """
The quick brown fox jumps over the lazy dog. A photo of a cat sitting on a red sofa, 4k, best quality.
You are a helpful assistant. USER: Please describe the image. ASSISTANT: The image shows a dog.
masterpiece, film grained, best quality. lowres, bad anatomy, bad hands, text, error, missing fingers,
extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature,
watermark, username, blurry. It's what they're saying: we'll see, I'd say, you've got 12 * 34 = 408.
Numbers 0123456789 and sizes 90*90, 64*64, 68*120. Tabs\tand  double  spaces,\nnew lines\r\n too.
中文的句子也在这里。日本語のテキストもあります。 Café naïve résumé — “quotes” and emoji 🙂.
"""
    * 3
)


@cache
def tiny_ranks(n_merges: int = N_MERGES) -> dict[bytes, int]:
    """256 single bytes (rank = byte value) then `n_merges` merges learned on CORPUS with QWen's regex."""
    ranks = {bytes([b]): b for b in range(256)}
    words = Counter(tuple(bytes([b]) for b in piece.encode()) for piece in regex.findall(QWEN_PATTERN, CORPUS))
    for _ in range(n_merges):
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, ties broken by the pair's bytes
        ranks[best[0] + best[1]] = len(ranks)
        words = Counter({_merge(word, best): count for word, count in words.items()})
    # Digit merges QWen's regex never uses (it splits digits) but GPT-2's regex does, as in the real
    # file (its ranks come from a vocabulary trained with multi-digit pieces): they expose the difference.
    for piece in HAND_MERGES:
        ranks.setdefault(piece, len(ranks))
    return ranks


def tiny_text_tokenizer(codebook_size: int = CODEBOOK_SIZE) -> TextTokenizer:
    """The BAAI-style (tiktoken) tokenizer over tiny_ranks(), with `codebook_size` visual tokens."""
    return TextTokenizer(TiktokenBPE(tiny_ranks()), codebook_size)


def tiny_trained_tokenizer(codebook_size: int = CODEBOOK_SIZE, vocab_size: int = 320) -> TextTokenizer:
    """Our own trainable backend (tokenizers BPE) trained on CORPUS."""
    return train_text_tokenizer(CORPUS.splitlines(), vocab_size, codebook_size)


def write_baai_folder(folder: Path, codebook_size: int = CODEBOOK_SIZE) -> Path:
    """BAAI's files: `emu3.tiktoken` (base64 token, rank) and `emu3_vision_tokens.txt`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{base64.b64encode(b).decode()} {r}" for b, r in tiny_ranks().items()]
    (folder / "emu3.tiktoken").write_text("\n".join(lines) + "\n")
    names = ["<|image token|>", "<|image start|>", "<|image end|>"]
    names += [VISUAL_TEMPLATE.format(k) for k in range(codebook_size)]
    (folder / "emu3_vision_tokens.txt").write_text("\n".join(names) + "\n")
    return folder


def write_hf_folder(folder: Path, codebook_size: int = CODEBOOK_SIZE) -> Path:
    """A `tokenizer.json` laid out like transformers' Emu3 converter writes it: byte-level BPE with the
    GPT-2 regex, every special in the vocab and as an added token, `<|extra_0|>` renamed `<image>`."""
    folder.mkdir(parents=True, exist_ok=True)
    ranks = tiny_ranks()
    vocab = {_byte_level(b): r for b, r in ranks.items()}
    merges = [" ".join(_byte_level(p) for p in _split_in_two(ranks, b, r)) for b, r in ranks.items() if len(b) > 1]
    names = list(fixed_special_names()) + [VISUAL_TEMPLATE.format(k) for k in range(codebook_size)]
    specials = {("<image>" if n == "<|extra_0|>" else n): len(ranks) + i for i, n in enumerate(names)}
    vocab |= specials
    added = [
        {"id": i, "content": n, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
        | {"special": True}
        for n, i in specials.items()
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level | {"add_prefix_space": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
    return folder


# ---------------------------------------------------------------- helpers


def _merge(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    out: list[bytes] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _split_in_two(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The last merge that builds `token`: run BPE on its bytes with merges below its own rank."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        scored = [(ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))]
        best, i = min(scored)
        if best >= rank:
            raise ValueError(f"token {token!r} cannot be built from lower-ranked merges")
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts[0], parts[1]


_PRINTABLE = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
_UNPRINTABLE = [b for b in range(256) if b not in _PRINTABLE]
_CHAR = {b: chr(b) if b in _PRINTABLE else chr(256 + _UNPRINTABLE.index(b)) for b in range(256)}


def _byte_level(piece: bytes) -> str:
    return "".join(_CHAR[b] for b in piece)
