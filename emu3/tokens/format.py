"""The Emu3 sequence grammar: image and video blocks, and build/parse between ids and segments.

This is the only module that knows how vision is laid out in a token sequence (spec 3.2):

    BOI "{h}*{w}" IMG  v(0,0) .. v(0,w-1) EOL  ..  v(h-1,0) .. v(h-1,w-1) EOL  EOF EOI

The header is the plain text "h*w" (QWen's regex gives one token per digit); every row, the last
included, ends with EOL; the frame ends with EOF. Visual code k is the id `visual_start + k`.
Sources: BAAI `emu3/mllm/processing_emu3.py` and `emu3/train/datasets.py`; transformers
`processing_emu3.py` (`image_seq_length = h * (w + 1)`).

A sequence is modelled as segments: Marker (BOS/EOS/PAD), Text (ids of ordinary text and of the
specials that carry no structure), Image (h, w) codes and Video (t, h, w) codes. `parse` is the
inverse of `build`: `parse(build(segs)) == segs` for any segments without two Texts in a row, and
`build(parse(ids)) == ids` for any well-formed ids. Malformed input raises FormatError naming the
token index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from emu3.tokens.special import SpecialTokens
from emu3.tokens.text import TextTokenizer
from emu3.tokens.visual_vocab import VisualVocab

_HEADER = re.compile(r"(\d+)\*(\d+)(?:\*(\d+))?")
_MAX_HEADER_TOKENS = 32
_VISUAL = -1  # template entry: "a visual token goes here"


class FormatError(ValueError):
    """A token sequence that breaks the Emu3 grammar."""


@dataclass(frozen=True)
class Text:
    """A run of ids that are neither markers nor vision structure (decode with tok.decode)."""

    ids: tuple[int, ...]

    @classmethod
    def of(cls, text: str, tok: TextTokenizer) -> Text:
        return cls(tuple(tok.encode(text)))


@dataclass(frozen=True)
class Marker:
    """A sequence-level special token."""

    role: Literal["bos", "eos", "pad"]


@dataclass(frozen=True, eq=False)
class Image:
    """One image as an (h, w) grid of VQ codes."""

    codes: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", _as_codes(self.codes, 2, "Image"))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _same(self.codes, other.codes)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Video:
    """One video as a (t, h, w) grid of VQ codes (t latent frames)."""

    codes: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", _as_codes(self.codes, 3, "Video"))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _same(self.codes, other.codes)

    __hash__ = None  # type: ignore[assignment]


Segment = Text | Marker | Image | Video


# ---------------------------------------------------------------- counts


def grid_token_count(height: int, width: int) -> int:
    """Tokens of one frame's rows: h * (w visual + EOL)."""
    return height * (width + 1)


def image_new_tokens(height: int, width: int) -> int:
    """Tokens a generator emits after IMG for one image: the rows, then EOF EOI EOS (spec 4.1)."""
    return grid_token_count(height, width) + 3


def video_new_tokens(frames: int, height: int, width: int) -> int:
    """Tokens emitted after IMG for a video: each frame's rows + EOF, then EOI EOS."""
    return frames * (grid_token_count(height, width) + 1) + 2


# ---------------------------------------------------------------- build


def image_prefix(height: int, width: int, tok: TextTokenizer) -> list[int]:
    """BOI "h*w" IMG: what precedes the grid (and ends a text-to-image prompt)."""
    return [tok.special.boi, *tok.encode(f"{height}*{width}"), tok.special.img]


def video_prefix(frames: int, height: int, width: int, tok: TextTokenizer) -> list[int]:
    """BOI "t*h*w" IMG."""
    return [tok.special.boi, *tok.encode(f"{frames}*{height}*{width}"), tok.special.img]


def image_block(codes: Tensor | Sequence[Sequence[int]], tok: TextTokenizer) -> list[int]:
    """The whole block of one (h, w) code grid: BOI "h*w" IMG rows-with-EOL EOF EOI."""
    codes = _as_codes(codes, 2, "image_block")
    return image_prefix(*codes.shape, tok) + _frame_ids(codes, tok.special) + [tok.special.eoi]


def video_block(codes: Tensor | Sequence[Sequence[Sequence[int]]], tok: TextTokenizer) -> list[int]:
    """The block of a (t, h, w) code grid: BOI "t*h*w" IMG, each frame as rows-with-EOL + EOF, then EOI.

    NOTE: the official Emu3 video layout is UNCONFIRMED (spec 3.5; no video code was released). This
    layout is our choice: it keeps the image grammar per frame (EOL after every row, EOF after every
    frame), so a 1-frame video differs from an image only by its "1*h*w" header. UniVLA's fork drops
    the EOLs inside frames; converting to it is a pure re-layout of the same codes.
    """
    codes = _as_codes(codes, 3, "video_block")
    body = [i for frame in codes for i in _frame_ids(frame, tok.special)]
    return video_prefix(*codes.shape, tok) + body + [tok.special.eoi]


def build(segments: Sequence[Segment], tok: TextTokenizer) -> list[int]:
    """Ids of a segment list (the inverse of `parse`)."""
    special = tok.special
    out: list[int] = []
    for seg in segments:
        if isinstance(seg, Marker):
            out.append(getattr(special, seg.role))
        elif isinstance(seg, Text):
            structural = _structural(special)
            bad = [i for i in seg.ids if i in structural or i >= special.visual_start]
            if bad:
                raise FormatError(f"Text holds structural or visual id {bad[0]}; use Marker/Image/Video for those")
            out += seg.ids
        elif isinstance(seg, Image):
            out += image_block(seg.codes, tok)
        elif isinstance(seg, Video):
            out += video_block(seg.codes, tok)
        else:
            raise TypeError(f"not a segment: {seg!r}")
    return out


# ---------------------------------------------------------------- parse


def parse(tokens: Sequence[int] | Tensor, tok: TextTokenizer) -> list[Segment]:
    """Segments of a 1-D id sequence; Text segments are maximal runs. Raises FormatError when malformed."""
    ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
    special = tok.special
    for i, token in enumerate(ids):
        if not 0 <= token < tok.vocab_size:
            raise FormatError(f"id {token} at token index {i} is outside the vocabulary [0, {tok.vocab_size})")
    markers = {special.bos: "bos", special.eos: "eos", special.pad: "pad"}
    structure = _structural(special) - set(markers) - {special.boi}
    out: list[Segment] = []
    run: list[int] = []
    i = 0
    while i < len(ids):
        token = ids[i]
        if token in markers or token == special.boi:
            if run:
                out.append(Text(tuple(run)))
                run = []
        if token in markers:
            out.append(Marker(markers[token]))  # type: ignore[arg-type]
            i += 1
        elif token == special.boi:
            seg, i = _parse_block(ids, i, tok)
            out.append(seg)
        elif token in structure or token >= special.visual_start:
            raise FormatError(f"{_name(token, tok)} at token index {i} is outside an image/video block")
        else:
            run.append(token)
            i += 1
    if run:
        out.append(Text(tuple(run)))
    return out


def _parse_block(ids: list[int], start: int, tok: TextTokenizer) -> tuple[Image | Video, int]:
    """Parse the block whose BOI is at `start`; return it and the index after its EOI."""
    special = tok.special
    j = start + 1
    while j < len(ids) and ids[j] < special.pad and j - start <= _MAX_HEADER_TOKENS:
        j += 1
    if j >= len(ids):
        raise FormatError(f"block at token index {start} is truncated inside its header")
    if ids[j] != special.img:
        raise FormatError(
            f"block at token index {start}: expected IMG after the size header, got {_name(ids[j], tok)} "
            f"at token index {j}"
        )
    header_ids = ids[start + 1 : j]
    header = tok.decode(header_ids)
    match = _HEADER.fullmatch(header)
    if match is None or tok.encode(header) != header_ids:
        raise FormatError(f"block at token index {start}: header {header!r} is not 'h*w' or 't*h*w' text")
    dims = [int(g) for g in match.groups() if g is not None]
    if min(dims) <= 0:
        raise FormatError(f"block at token index {start}: header {header!r} has a zero size")
    frames, height, width = dims if len(dims) == 3 else [1, *dims]
    template = _template(frames, height, width, special)  # (L,) expected ids; -1 = visual
    body_start = j + 1
    body = torch.tensor(ids[body_start : body_start + template.numel()], dtype=torch.long)
    expected = template[: body.numel()]
    visual = VisualVocab.from_special(special).is_visual(body)
    ok = torch.where(expected == _VISUAL, visual, body == expected)
    if not ok.all():
        k = int((~ok).nonzero()[0])
        raise FormatError(_mismatch(k, body_start, template, body, width, height, header, tok))
    if body.numel() < template.numel():
        raise FormatError(
            f"block at token index {start} ({header}) is truncated: needs {template.numel()} tokens after IMG, "
            f"the sequence has {body.numel()}"
        )
    grid = body[template == _VISUAL] - special.visual_start
    end = body_start + template.numel()
    if len(dims) == 2:
        return Image(grid.view(height, width)), end
    return Video(grid.view(frames, height, width)), end


# ---------------------------------------------------------------- helpers


def _frame_ids(codes: Tensor, special: SpecialTokens) -> list[int]:
    """(h, w) codes -> rows of visual ids each closed by EOL, then EOF."""
    ids = VisualVocab.from_special(special).codes_to_ids(codes)  # (h, w)
    eol = torch.full((codes.shape[0], 1), special.eol, dtype=torch.long)
    return torch.cat([ids, eol], dim=1).flatten().tolist() + [special.eof]  # h*(w+1) + 1


def _template(frames: int, height: int, width: int, special: SpecialTokens) -> Tensor:
    row = torch.full((width + 1,), _VISUAL, dtype=torch.long)
    row[-1] = special.eol
    frame = torch.cat([row.repeat(height), torch.tensor([special.eof])])
    return torch.cat([frame.repeat(frames), torch.tensor([special.eoi])])


def _mismatch(
    k: int, body_start: int, template: Tensor, body: Tensor, width: int, height: int, header: str, tok: TextTokenizer
) -> str:
    frame_len = grid_token_count(height, width) + 1
    frame, pos = divmod(k, frame_len)
    row, col = divmod(pos, width + 1)
    got = _name(int(body[k]), tok)
    where = f"token index {body_start + k} (block {header}, frame {frame}, row {row})"
    expected = int(template[k])
    if expected == _VISUAL:
        return f"expected visual token {col} of {width} in the row at {where}, got {got}"
    if expected == tok.special.eol:
        return f"expected EOL after {width} visual tokens at {where}, got {got}"
    if expected == tok.special.eof:
        return f"expected EOF after {height} rows at {where}, got {got}"
    return f"expected EOI closing the block at token index {body_start + k}, got {got}"


def _structural(special: SpecialTokens) -> set[int]:
    s = special
    return {s.bos, s.eos, s.pad, s.boi, s.img, s.eol, s.eof, s.eoi}


def _name(token: int, tok: TextTokenizer) -> str:
    return tok.special_name(token) if token >= tok.special.pad else f"text id {token}"


def _as_codes(codes: Tensor | Sequence, ndim: int, what: str) -> Tensor:
    codes = torch.as_tensor(codes)
    if codes.ndim != ndim or codes.is_floating_point() or codes.dtype == torch.bool or 0 in codes.shape:
        raise ValueError(f"{what} needs a non-empty {ndim}-D integer code grid, got {codes.dtype} {tuple(codes.shape)}")
    return codes.long().cpu()


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)
