"""The ordinary-text BPE backends behind TextTokenizer, and their on-disk formats.

A backend only maps text <-> ids in [0, n_vocab); the special block after it is handled by
TextTokenizer arithmetically (so 32768 visual tokens cost nothing at load time). Three formats:

- BAAI's files (`emu3.tiktoken`: `base64(token) rank` per line, `emu3_vision_tokens.txt`: image
  specials then visual tokens) -> tiktoken with QWen's pre-tokenizer regex and NFC normalisation,
  as BAAI `emu3/mllm/tokenization_emu3.py` does (spec 3.1).
- A transformers-converted `tokenizer.json` (byte-level BPE, GPT-2 regex, no normaliser; spec 3.1;
  transformers `convert_emu3_weights_to_hf.py`), read with `tokenizers` exactly as written.
- Our own trained byte-level BPE (`tokenizer.json` + `emu3_tokenizer.json`), QWen regex + NFC.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import tiktoken
import tokenizers

from emu3.tokens.special import VISUAL_TEMPLATE, SpecialTokens, fixed_special_names

# QWen's pre-tokenizer regex (BAAI PAT_STR): note `\p{N}` alone, so every digit is its own piece.
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
TIKTOKEN_FILE = "emu3.tiktoken"
VISION_TOKENS_FILE = "emu3_vision_tokens.txt"
HF_FILE = "tokenizer.json"
DESCRIPTOR_FILE = "emu3_tokenizer.json"
DESCRIPTOR_FORMAT = "emu3-text-tokenizer"


class TiktokenBPE:
    """BAAI's tokenizer: tiktoken ranks + QWen regex; text is NFC-normalised before encoding."""

    def __init__(self, ranks: dict[bytes, int]) -> None:
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise ValueError("tiktoken ranks must be exactly 0 .. n-1 with no gaps or repeats")
        self.ranks = ranks
        self.n_vocab = len(ranks)
        self._enc = tiktoken.Encoding("emu3", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens={})
        self._bytes = {i: b for b, i in ranks.items()}

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(unicodedata.normalize("NFC", text))

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def token_id(self, piece: bytes) -> int | None:
        return self.ranks.get(piece)

    def save(self, folder: Path, special: SpecialTokens) -> None:
        lines = (f"{base64.b64encode(b).decode()} {i}\n" for i, b in sorted(self._bytes.items()))
        (folder / TIKTOKEN_FILE).write_text("".join(lines))
        names = fixed_special_names()[-3:] + tuple(VISUAL_TEMPLATE.format(k) for k in range(special.codebook_size))
        (folder / VISION_TOKENS_FILE).write_text("".join(n + "\n" for n in names))


class TokenizersBPE:
    """A byte-level BPE `tokenizers.Tokenizer` with its added tokens removed (TextTokenizer owns specials).

    `original_json` is the HF file as read; when set, save() writes it back unchanged.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, n_vocab: int, original_json: str | None = None) -> None:
        self._tk = tokenizer
        self.n_vocab = n_vocab
        self.original_json = original_json

    def encode(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False).ids

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._tk.id_to_token(token_id)
        if piece is None:
            raise ValueError(f"id {token_id} is not in the BPE vocabulary")
        return bytes(_BYTE_OF_CHAR[c] for c in piece)

    def token_id(self, piece: bytes) -> int | None:
        return self._tk.token_to_id("".join(_CHAR_OF_BYTE[b] for b in piece))

    def save(self, folder: Path, special: SpecialTokens) -> None:
        if self.original_json is not None:
            (folder / HF_FILE).write_text(self.original_json, encoding="utf-8")
            return
        (folder / HF_FILE).write_text(self._tk.to_str(), encoding="utf-8")
        descriptor = {"format": DESCRIPTOR_FORMAT, "version": 1, "backend": "byte_level_bpe"}
        descriptor |= {"n_text": self.n_vocab, "codebook_size": special.codebook_size}
        (folder / DESCRIPTOR_FILE).write_text(json.dumps(descriptor, indent=2) + "\n")


# ---------------------------------------------------------------- readers


def read_tiktoken_folder(folder: Path) -> tuple[TiktokenBPE, int]:
    """BAAI's two files -> (backend, codebook_size)."""
    ranks: dict[bytes, int] = {}
    for n, line in enumerate((folder / TIKTOKEN_FILE).read_bytes().splitlines(), start=1):
        if line.strip():
            try:
                piece, rank = line.split()
                ranks[base64.b64decode(piece, validate=True)] = int(rank)
            except ValueError as err:
                raise ValueError(f"{folder / TIKTOKEN_FILE}:{n}: expected 'base64 rank', got {line[:60]!r}") from err
    lines = [t.strip() for t in (folder / VISION_TOKENS_FILE).read_text(encoding="utf-8").splitlines() if t.strip()]
    expected_head = list(fixed_special_names()[-3:])
    if lines[:3] != expected_head:
        raise ValueError(f"{folder / VISION_TOKENS_FILE} must start with {expected_head}, got {lines[:3]}")
    for k, name in enumerate(lines[3:]):
        if name != VISUAL_TEMPLATE.format(k):
            raise ValueError(f"{folder / VISION_TOKENS_FILE} line {k + 4}: expected {VISUAL_TEMPLATE.format(k)!r}")
    return TiktokenBPE(ranks), len(lines) - 3


def read_hf_folder(folder: Path) -> tuple[TokenizersBPE, int]:
    """A transformers Emu3 `tokenizer.json` -> (backend, codebook_size), checking the official special order.

    The converter renames `<|extra_0|>` to `<image>`; both spellings are accepted for that id.
    """
    text = (folder / HF_FILE).read_text(encoding="utf-8")
    spec = json.loads(text)
    if spec.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise ValueError(f"{folder / HF_FILE}: expected a byte-level BPE tokenizer")
    ids = dict(spec["model"]["vocab"]) | {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    if "<|extra_0|>" not in ids and "<image>" in ids:
        ids["<|extra_0|>"] = ids["<image>"]
    if "<|endoftext|>" not in ids:
        raise ValueError(f"{folder / HF_FILE}: no <|endoftext|> token, so this is not an Emu3 tokenizer")
    n_text = ids["<|endoftext|>"]
    for i, name in enumerate(fixed_special_names()):
        if ids.get(name) != n_text + i:
            raise ValueError(f"{folder / HF_FILE}: {name} has id {ids.get(name)}, the Emu3 layout needs {n_text + i}")
    codebook_size = 0
    visual_start = n_text + len(fixed_special_names())
    while ids.get(VISUAL_TEMPLATE.format(codebook_size)) == visual_start + codebook_size:
        codebook_size += 1
    if codebook_size == 0:
        raise ValueError(f"{folder / HF_FILE}: no visual tokens from id {visual_start} on")
    spec["added_tokens"] = []  # TextTokenizer parses specials itself
    return TokenizersBPE(tokenizers.Tokenizer.from_str(json.dumps(spec)), n_text, original_json=text), codebook_size


def read_trained_folder(folder: Path) -> tuple[TokenizersBPE, int]:
    """Our own format -> (backend, codebook_size)."""
    descriptor = json.loads((folder / DESCRIPTOR_FILE).read_text())
    if descriptor.get("format") != DESCRIPTOR_FORMAT or descriptor.get("version") != 1:
        raise ValueError(f"{folder / DESCRIPTOR_FILE}: unknown format {descriptor.get('format')!r} / version")
    tk = tokenizers.Tokenizer.from_file(str(folder / HF_FILE))
    n_text = descriptor["n_text"]
    if tk.get_vocab_size(with_added_tokens=True) != n_text:
        raise ValueError(f"{folder}: tokenizer.json has {tk.get_vocab_size()} tokens, descriptor says {n_text}")
    return TokenizersBPE(tk, n_text), descriptor["codebook_size"]


def train_bpe(texts: Iterable[str], vocab_size: int) -> TokenizersBPE:
    """Train a byte-level BPE with `vocab_size` ordinary tokens (256 bytes + merges)."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (one token per byte), got {vocab_size}")
    pre = tokenizers.pre_tokenizers
    tk = tokenizers.Tokenizer(tokenizers.models.BPE())
    tk.normalizer = tokenizers.normalizers.NFC()
    tk.pre_tokenizer = pre.Sequence(
        [
            pre.Split(tokenizers.Regex(QWEN_PATTERN), behavior="isolated"),
            pre.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tk.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre.ByteLevel.alphabet(), show_progress=False, special_tokens=[]
    )
    tk.train_from_iterator(texts, trainer=trainer)
    learned = tk.get_vocab_size()
    if learned != vocab_size:
        raise ValueError(f"the corpus only supports {learned} tokens, fewer than vocab_size={vocab_size}; lower it")
    return TokenizersBPE(tk, learned)


def _byte_level_chars() -> dict[int, str]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others map to chr(256 + n)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}


_CHAR_OF_BYTE = _byte_level_chars()
_BYTE_OF_CHAR = {c: b for b, c in _CHAR_OF_BYTE.items()}
