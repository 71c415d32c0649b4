"""Prompts and training layouts: text-to-image, chat (with SFT labels), pretraining."""

import pytest
import torch

from emu3.tokens.format import Image, Marker, Text, Video, image_block, image_new_tokens, parse
from emu3.tokens.templates import (
    DEFAULT_NEGATIVE,
    IGNORE_INDEX,
    Message,
    caption_then_image,
    caption_then_video,
    chat_example,
    chat_prompt,
    generation_size,
    image_then_caption,
    t2i_negative_prompt,
    t2i_prompt,
    text_only,
    video_then_caption,
)
from tests.helpers.tiny_tokenizers import tiny_text_tokenizer

TOK = tiny_text_tokenizer()
S = TOK.special
GRID = torch.tensor([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    ("ratio", "area", "expected"),
    [("1:1", 518400, (90, 90)), ("16:9", 518400, (68, 120)), ("9:16", 518400, (120, 68)), ("4:3", 518400, (78, 104))]
    + [("1:1", 1600, (5, 5)), ("1:1", 512 * 512, (64, 64))],
)
def test_generation_size(ratio, area, expected):
    assert generation_size(ratio, area) == expected


def test_t2i_prompt_layout():
    ids = t2i_prompt("a cat", 90, 90, TOK)
    by_hand = [S.bos, *TOK.encode("a cat masterpiece, film grained, best quality."), S.boi]
    by_hand += TOK.encode("9") + TOK.encode("0") + TOK.encode("*") + TOK.encode("9") + TOK.encode("0") + [S.img]
    assert ids == by_hand
    # the same ids BAAI gets by tokenising the whole prompt string with specials allowed
    text = "<|extra_203|>a cat masterpiece, film grained, best quality.<|image start|>90*90<|image token|>"
    assert ids == TOK.encode(text, allow_special=True)
    assert t2i_prompt("a cat", 2, 3, TOK, positive_suffix="")[-5:] == [S.boi, *TOK.encode("2*3"), S.img]


def test_t2i_negative_prompt_layout():
    assert DEFAULT_NEGATIVE == (
        "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
        "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry."
    )
    ids = t2i_negative_prompt(68, 120, TOK)
    assert TOK.decode(ids, skip_special=False) == (
        "<|extra_203|>" + DEFAULT_NEGATIVE + "<|image start|>68*120<|image token|>"
    )
    assert ids == [S.bos, *TOK.encode(DEFAULT_NEGATIVE), S.boi, *TOK.encode("68*120"), S.img]


def test_generated_image_completes_the_prompt():
    """What a generator emits after IMG (image_new_tokens of them) closes the grammar."""
    prompt = t2i_prompt("a cat", 2, 3, TOK)
    block = image_block(GRID, TOK)
    generated = block[block.index(S.img) + 1 :] + [S.eos]
    assert len(generated) == image_new_tokens(2, 3)
    segs = parse(prompt + generated, TOK)
    assert segs[0] == Marker("bos") and segs[2:] == [Image(GRID), Marker("eos")]


def test_pretraining_layouts():
    vid = GRID[None].repeat(2, 1, 1)
    cap = Text.of("a cat", TOK)
    cases = [
        (caption_then_image("a cat", GRID, TOK), [Marker("bos"), cap, Image(GRID), Marker("eos")]),
        (image_then_caption(GRID, "a cat", TOK), [Marker("bos"), Image(GRID), cap, Marker("eos")]),
        (caption_then_video("a cat", vid, TOK), [Marker("bos"), cap, Video(vid), Marker("eos")]),
        (video_then_caption(vid, "a cat", TOK), [Marker("bos"), Video(vid), cap, Marker("eos")]),
        (text_only("a cat", TOK), [Marker("bos"), cap, Marker("eos")]),
    ]
    for ids, segs in cases:
        assert parse(ids, TOK) == segs


def test_chat_prompt_matches_baai_mode_u():
    turns = [Message("user", (Image(GRID), "Please describe the image."))]
    ids = chat_prompt(turns, TOK)
    block = TOK.decode(image_block(GRID, TOK), skip_special=False)
    # BAAI: "You are a helpful assistant. USER: {image_prompt}{text_prompt}. ASSISTANT:" with BOS in front
    baai = "<|extra_203|>You are a helpful assistant. USER: " + block + "Please describe the image" + ". ASSISTANT:"
    assert ids == TOK.encode(baai, allow_special=True)
    assert ids[-len(TOK.encode(" ASSISTANT:")) :] == TOK.encode(" ASSISTANT:")


def test_chat_example_labels_only_answers():
    turns = [
        Message("user", (Image(GRID), "What is it?")),
        Message("assistant", "A cat."),
        Message("user", "Sure?"),
        Message("assistant", ("Yes.",)),
    ]
    tokens, labels = chat_example(turns, TOK)
    assert len(tokens) == len(labels)
    assert all(lab in (IGNORE_INDEX, tok) for lab, tok in zip(labels, tokens, strict=True))
    trained = [t for t, lab in zip(tokens, labels, strict=True) if lab != IGNORE_INDEX]
    assert trained == TOK.encode(" A cat.") + [S.eos] + TOK.encode(" Yes.") + [S.eos]
    assert tokens[: len(chat_prompt(turns[:1], TOK))] == chat_prompt(turns[:1], TOK)
    assert TOK.decode(tokens, skip_special=False).endswith(
        "What is it? ASSISTANT: A cat.<|extra_204|> USER: Sure? ASSISTANT: Yes.<|extra_204|>"
    )
    # the prompt for the second answer is the first conversation plus the new user turn
    assert tokens[: len(chat_prompt(turns[:3], TOK))] == chat_prompt(turns[:3], TOK)


def test_chat_without_system_and_errors():
    ids = chat_prompt([Message("user", "hi")], TOK, system="")
    assert TOK.decode(ids, skip_special=False) == "<|extra_203|>USER: hi ASSISTANT:"
    with pytest.raises(ValueError, match="end with a user message"):
        chat_prompt([Message("user", "a"), Message("assistant", "b")], TOK)
    with pytest.raises(ValueError, match="end with an assistant message"):
        chat_example([Message("user", "a")], TOK)
    with pytest.raises(ValueError, match="alternate"):
        chat_prompt([Message("user", "a"), Message("user", "b")], TOK)
    with pytest.raises(ValueError, match="assistant content must be text"):
        Message("assistant", (Image(GRID),))
    with pytest.raises(ValueError, match="role"):
        Message("system", "x")
    with pytest.raises(TypeError, match="str, Image or Video"):
        Message("user", (GRID,))
