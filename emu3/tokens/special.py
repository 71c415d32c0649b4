"""Special token ids of the Emu3 vocabulary, by role, in one frozen dataclass.

Emu3's vocabulary is `n_text` ordinary BPE tokens followed by the special block, always in this order
(sources: BAAI `emu3/mllm/tokenization_emu3.py`, spec section 3.1; UniVLA for the action markers, spec 6):

    <|endoftext|> <|im_start|> <|im_end|> <|extra_0|> .. <|extra_204|>
    <|image token|> <|image start|> <|image end|> <|visual token 000000|> .. <|visual token {K-1:06d}|>

Roles: pad = <|endoftext|>, img = <|image token|>, boi = <|image start|>, eoi = <|image end|>,
eol = extra_200, eof = extra_201, bos = extra_203, eos = extra_204, boa/eoa = extra_198/199 (UniVLA).
The official tokenizer has n_text = 151643 and K = 32768 visual codes, so vocab_size = 184622.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

N_EXTRA = 205
VISUAL_TEMPLATE = "<|visual token {:06d}|>"
_HEAD = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_IMAGE = ("<|image token|>", "<|image start|>", "<|image end|>")
OFFICIAL_N_TEXT = 151643
OFFICIAL_CODEBOOK_SIZE = 32768


def fixed_special_names() -> tuple[str, ...]:
    """The 211 non-visual special strings, in vocabulary order."""
    return _HEAD + tuple(f"<|extra_{i}|>" for i in range(N_EXTRA)) + _IMAGE


def special_token_names(codebook_size: int) -> list[str]:
    """Every special string in vocabulary order: the 211 fixed ones, then one per visual code."""
    return list(fixed_special_names()) + [VISUAL_TEMPLATE.format(k) for k in range(codebook_size)]


@dataclass(frozen=True)
class SpecialTokens:
    """Vocab ids of every special role. Visual code k has id `visual_start + k`."""

    pad: int
    bos: int
    eos: int
    img: int  # <|image token|>: separates the "h*w" header from the grid
    boi: int  # <|image start|>
    eoi: int  # <|image end|>
    eol: int  # end of a grid row
    eof: int  # end of a frame (an image is one frame)
    im_start: int
    im_end: int
    boa: int  # begin of a robot-action span (UniVLA)
    eoa: int  # end of a robot-action span (UniVLA)
    visual_start: int
    codebook_size: int
    extra_start: int | None = None  # id of <|extra_0|>; None for layouts without the extra block

    def __post_init__(self) -> None:
        roles = {f.name: getattr(self, f.name) for f in fields(self)[:12]}
        if len(set(roles.values())) != len(roles):
            raise ValueError(f"special role ids must be distinct, got {roles}")
        if self.codebook_size <= 0:
            raise ValueError(f"codebook_size must be positive, got {self.codebook_size}")
        if min(roles.values()) < 0 or max(roles.values()) >= self.visual_start:
            raise ValueError(f"role ids must be >= 0 and below the visual block at {self.visual_start}, got {roles}")

    @property
    def vocab_size(self) -> int:
        return self.visual_start + self.codebook_size

    def extra(self, n: int) -> int:
        """Id of `<|extra_n|>`."""
        if self.extra_start is None:
            raise ValueError("this layout has no <|extra_N|> block")
        if not 0 <= n < N_EXTRA:
            raise ValueError(f"extra index must be in [0, {N_EXTRA}), got {n}")
        return self.extra_start + n

    def visual(self, code: int) -> int:
        """Id of visual code `code`."""
        if not 0 <= code < self.codebook_size:
            raise ValueError(f"visual code must be in [0, {self.codebook_size}), got {code}")
        return self.visual_start + code

    def role_ids(self) -> tuple[int, ...]:
        """The twelve role ids (pad .. eoa), in field order."""
        return astuple(self)[:12]

    @classmethod
    def official(cls) -> SpecialTokens:
        """The exact layout of BAAI's released tokenizer (pad 151643 .. last visual id 184621)."""
        return special_layout(OFFICIAL_N_TEXT, OFFICIAL_CODEBOOK_SIZE)


def special_layout(n_text: int, codebook_size: int) -> SpecialTokens:
    """The official special block placed right after `n_text` ordinary tokens."""
    extra = n_text + len(_HEAD)
    image = extra + N_EXTRA
    return SpecialTokens(
        pad=n_text,
        im_start=n_text + 1,
        im_end=n_text + 2,
        bos=extra + 203,
        eos=extra + 204,
        eol=extra + 200,
        eof=extra + 201,
        boa=extra + 198,
        eoa=extra + 199,
        img=image,
        boi=image + 1,
        eoi=image + 2,
        visual_start=image + len(_IMAGE),
        codebook_size=codebook_size,
        extra_start=extra,
    )
