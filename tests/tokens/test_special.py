"""The special-token layout: the official ids, the general layout, and validation."""

import dataclasses

import pytest

from emu3.tokens.special import SpecialTokens, special_layout, special_token_names
from tests.helpers.tiny_tokenizers import CODEBOOK_SIZE, tiny_ranks

OFFICIAL = SpecialTokens.official()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (OFFICIAL.pad, 151643),
        (OFFICIAL.im_start, 151644),
        (OFFICIAL.im_end, 151645),
        (OFFICIAL.extra(0), 151646),
        (OFFICIAL.extra(204), 151850),
        (OFFICIAL.boa, 151844),
        (OFFICIAL.eoa, 151845),
        (OFFICIAL.eol, 151846),
        (OFFICIAL.eof, 151847),
        (OFFICIAL.extra(202), 151848),
        (OFFICIAL.bos, 151849),
        (OFFICIAL.eos, 151850),
        (OFFICIAL.img, 151851),
        (OFFICIAL.boi, 151852),
        (OFFICIAL.eoi, 151853),
        (OFFICIAL.visual_start, 151854),
        (OFFICIAL.visual(0), 151854),
        (OFFICIAL.visual(1234), 151854 + 1234),
        (OFFICIAL.visual(32767), 184621),
        (OFFICIAL.vocab_size, 184622),
        (OFFICIAL.codebook_size, 32768),
    ],
)
def test_official_ids(value, expected):
    assert value == expected


def test_official_is_the_general_layout_after_151643_text_tokens():
    assert OFFICIAL == special_layout(151643, 32768)


def test_roles_sit_at_their_extra_slots():
    s = special_layout(100, 8)
    assert (s.boa, s.eoa, s.eol, s.eof, s.bos, s.eos) == tuple(s.extra(n) for n in (198, 199, 200, 201, 203, 204))


def test_names_follow_the_id_order():
    names = special_token_names(32768)
    assert len(names) == 211 + 32768 == OFFICIAL.vocab_size - OFFICIAL.pad
    by_id = {OFFICIAL.pad + i: n for i, n in enumerate(names)}
    assert by_id[151643] == "<|endoftext|>"
    assert by_id[151646] == "<|extra_0|>"
    assert by_id[151849] == "<|extra_203|>"
    assert by_id[151851] == "<|image token|>"
    assert by_id[151852] == "<|image start|>"
    assert by_id[151853] == "<|image end|>"
    assert by_id[151854] == "<|visual token 000000|>"
    assert by_id[184621] == "<|visual token 032767|>"


def test_tiny_fixture_has_the_same_relative_layout(tok):
    n_text = len(tiny_ranks())
    assert tok.special == special_layout(n_text, CODEBOOK_SIZE)
    shift = n_text - 151643
    for role in ("pad", "bos", "eos", "img", "boi", "eoi", "eol", "eof", "im_start", "im_end", "boa", "eoa"):
        assert getattr(tok.special, role) == getattr(OFFICIAL, role) + shift, role
    assert tok.special.visual_start == 151854 + shift
    assert tok.vocab_size == n_text + 211 + CODEBOOK_SIZE


def test_validation():
    with pytest.raises(ValueError, match="distinct"):
        dataclasses.replace(OFFICIAL, eos=OFFICIAL.bos)
    with pytest.raises(ValueError, match="below the visual block"):
        dataclasses.replace(OFFICIAL, visual_start=OFFICIAL.eoi)
    with pytest.raises(ValueError, match="codebook_size"):
        dataclasses.replace(OFFICIAL, codebook_size=0)
    with pytest.raises(ValueError, match="extra index"):
        OFFICIAL.extra(205)
    with pytest.raises(ValueError, match="visual code"):
        OFFICIAL.visual(32768)
    no_extras = dataclasses.replace(OFFICIAL, extra_start=None)
    with pytest.raises(ValueError, match="no <|extra_N|> block"):
        no_extras.extra(0)
