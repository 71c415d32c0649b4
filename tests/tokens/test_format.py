"""The sequence grammar: block layout by hand, parse(build(x)) == x, and every malformed case."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu3.tokens.format import (
    FormatError,
    Image,
    Marker,
    Text,
    Video,
    build,
    grid_token_count,
    image_block,
    image_new_tokens,
    parse,
    video_block,
    video_new_tokens,
)
from tests.helpers.tiny_tokenizers import CODEBOOK_SIZE, tiny_text_tokenizer

TOK = tiny_text_tokenizer()
S = TOK.special


def codes(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CODEBOOK_SIZE, shape, generator=torch.Generator().manual_seed(seed))


def test_image_block_layout_by_hand():
    grid = torch.tensor([[0, 1, 2], [3, 4, 5]])
    v = [S.visual_start + k for k in range(6)]
    header = TOK.encode("2") + TOK.encode("*") + TOK.encode("3")
    expected = [S.boi, *header, S.img, v[0], v[1], v[2], S.eol, v[3], v[4], v[5], S.eol, S.eof, S.eoi]
    assert image_block(grid, TOK) == expected
    assert image_block([[0, 1, 2], [3, 4, 5]], TOK) == expected  # nested lists work too
    assert len(expected) == grid_token_count(2, 3) + len(header) + 4


def test_video_block_layout_by_hand():
    grid = torch.tensor([[[0, 1]], [[2, 3]]])  # (t=2, h=1, w=2)
    v = [S.visual_start + k for k in range(4)]
    header = TOK.encode("2*1*2")
    body = [v[0], v[1], S.eol, S.eof, v[2], v[3], S.eol, S.eof]
    assert video_block(grid, TOK) == [S.boi, *header, S.img, *body, S.eoi]


def test_token_counts():
    assert grid_token_count(90, 90) == 8190
    assert image_new_tokens(90, 90) == 8193  # spec 4.1: 720x720 -> 8193 new tokens
    assert image_new_tokens(5, 5) == 33  # transformers test: 54 - 21
    assert video_new_tokens(1, 5, 5) == image_new_tokens(5, 5)
    block = video_block(codes(3, 2, 4), TOK)
    after_img = len(block) - block.index(S.img) - 1
    assert after_img + 1 == video_new_tokens(3, 2, 4)  # + the EOS a generator adds


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (3, 2), (4, 4), (2, 7), (12, 10)])
def test_image_round_trip(shape):
    segs = [Marker("bos"), Text.of("a photo", TOK), Image(codes(*shape)), Marker("eos")]
    ids = build(segs, TOK)
    assert parse(ids, TOK) == segs
    assert parse(torch.tensor(ids), TOK) == segs
    assert build(parse(ids, TOK), TOK) == ids


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 2, 3), (3, 2, 2), (2, 4, 1)])
def test_video_round_trip(shape):
    segs = [Marker("bos"), Video(codes(*shape)), Text.of("a clip", TOK), Marker("eos")]
    assert parse(build(segs, TOK), TOK) == segs


def test_one_frame_video_is_not_an_image():
    grid = codes(2, 3)
    assert parse(video_block(grid[None], TOK), TOK) == [Video(grid[None])]
    assert parse(image_block(grid, TOK), TOK) == [Image(grid)]


def test_mixed_sequence_round_trip():
    segs = [
        Marker("bos"),
        Text.of("look: ", TOK),
        Image(codes(2, 3, seed=1)),
        Text(tuple(TOK.encode(" then") + [S.im_start, S.boa, S.eoa, S.extra(5)])),
        Video(codes(2, 2, 2, seed=2)),
        Marker("eos"),
        Marker("pad"),
    ]
    assert parse(build(segs, TOK), TOK) == segs


# ---------------------------------------------------------------- property test

roles = st.sampled_from(["bos", "eos", "pad"]).map(Marker)
text_ids = st.lists(
    st.one_of(st.integers(0, S.pad - 1), st.sampled_from([S.im_start, S.im_end, S.boa, S.eoa, S.extra(0)])),
    min_size=1,
    max_size=6,
).map(lambda ids: Text(tuple(ids)))
images = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31)).map(
    lambda a: Image(codes(a[0], a[1], seed=a[2]))
)
videos = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**31)).map(
    lambda a: Video(codes(a[0], a[1], a[2], seed=a[3]))
)


def _merge_texts(segs):
    out = []
    for seg in segs:
        if isinstance(seg, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].ids + seg.ids)
        else:
            out.append(seg)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(roles, text_ids, images, videos), max_size=6))
def test_parse_inverts_build(segs):
    ids = build(segs, TOK)
    parsed = parse(ids, TOK)
    assert parsed == _merge_texts(segs)
    assert build(parsed, TOK) == ids


# ---------------------------------------------------------------- malformed sequences


def _image_seq(h: int = 2, w: int = 3) -> list[int]:
    return [S.bos, *image_block(codes(h, w), TOK), S.eos]


def _first(ids: list[int], token: int) -> int:
    return ids.index(token)


def _drop(ids, i):
    return ids[:i] + ids[i + 1 :]


def _header(text):
    return [S.boi, *TOK.encode(text), S.img]


BODY_2x3 = image_block(codes(2, 3), TOK)[len(_header("2*3")) :]


def _row_too_short():
    ids = _image_seq()
    return _drop(ids, _first(ids, S.eol) - 1)


def _row_too_long():
    ids = _image_seq()
    i = _first(ids, S.eol)
    return ids[:i] + [S.visual_start] + ids[i:]


def _last_eol_missing():
    ids = _image_seq()
    return _drop(ids, _first(ids, S.eof) - 1)


MALFORMED = {
    "row too short": (_row_too_short, r"expected visual token 2 of 3 .* token index 8 .*row 0\), got <\|extra_200\|>"),
    "row too long": (_row_too_long, r"expected EOL after 3 visual tokens at token index 9"),
    "missing EOL": (_last_eol_missing, r"expected EOL after 3 visual tokens at token index 13 .*row 1"),
    "missing EOF": (lambda: _drop(_image_seq(), _first(_image_seq(), S.eof)), r"expected EOF after 2 rows"),
    "missing EOI": (lambda: _drop(_image_seq(), _first(_image_seq(), S.eoi)), r"expected EOI .* got <\|extra_204\|>"),
    "visual outside": (lambda: [S.bos, S.visual_start + 1, S.eos], r"visual token 000001\|> at token index 1 is out"),
    "EOL outside": (lambda: [S.bos, *TOK.encode("hi"), S.eol], r"<\|extra_200\|> at token index 3 is outside"),
    "IMG outside": (lambda: [S.img], r"image token\|> at token index 0 is outside"),
    "header says more rows": (lambda: _header("3*3") + BODY_2x3, r"expected visual token 0 of 3 .*row 2\)"),
    "header says narrower": (lambda: _header("2*2") + BODY_2x3, r"expected EOL after 2 visual tokens"),
    "truncated body": (lambda: image_block(codes(2, 3), TOK)[:9], r"truncated: needs 10 tokens after IMG"),
    "truncated header": (lambda: [S.bos, S.boi, *TOK.encode("2*")], r"token index 1 is truncated inside its header"),
    "no IMG": (lambda: [S.boi, *TOK.encode("2*3"), S.eos], r"expected IMG .* got <\|extra_204\|> at token index 4"),
    "header not h*w": (lambda: _header("ab") + BODY_2x3, r"header 'ab' is not 'h\*w'"),
    "zero size": (lambda: _header("0*3") + BODY_2x3, r"zero size"),
    "non-canonical header": (
        lambda: [S.boi, TOK.token_to_id("12"), *TOK.encode("*1"), S.img],
        r"header '12\*1' is not",
    ),
    "id outside vocab": (lambda: [S.bos, TOK.vocab_size], r"id .* at token index 1 is outside the vocabulary"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_raises(case):
    make, message = MALFORMED[case]
    with pytest.raises(FormatError, match=message):
        parse(make(), TOK)


def test_build_rejects_structure_inside_text():
    with pytest.raises(FormatError, match="structural or visual"):
        build([Text((S.eol,))], TOK)
    with pytest.raises(ValueError, match="2-D integer code grid"):
        Image(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="codes must lie in"):
        image_block(torch.tensor([[CODEBOOK_SIZE]]), TOK)
