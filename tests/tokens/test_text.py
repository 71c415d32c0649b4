"""TextTokenizer over its three backends: encoding, specials, errors, files."""

import pytest

from emu3.tokens.special import special_layout
from emu3.tokens.text import TextTokenizer, load_text_tokenizer, train_text_tokenizer
from tests.helpers.tiny_tokenizers import CORPUS, write_baai_folder, write_hf_folder

ROUND_TRIP = [
    "Hello world",
    "The quick brown fox, it's 4k!",
    "2024 and 90*90",
    "tabs\tand  double   spaces \n\n\r\n end  ",
    "中文的句子也在这里。日本語",
    "Café naïve — “quotes” 🙂",
    "",
    " ",
]


@pytest.fixture(params=["baai", "trained"])
def any_tok(request, tok, trained_tok) -> TextTokenizer:
    return tok if request.param == "baai" else trained_tok


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(any_tok, text):
    ids = any_tok.encode(text)
    assert all(0 <= i < any_tok.special.pad for i in ids)
    assert any_tok.decode(ids) == text


def test_digits_are_one_token_each(any_tok):
    digit = [any_tok.encode(d) for d in "0123456789"]
    assert all(len(d) == 1 for d in digit)
    assert any_tok.encode("9012") == digit[9] + digit[0] + digit[1] + digit[2]
    assert any_tok.encode("90*90") == digit[9] + digit[0] + any_tok.encode("*") + digit[9] + digit[0]


def test_nfc_normalisation(any_tok):
    assert any_tok.encode("e\u0301") == any_tok.encode("\u00e9")
    assert any_tok.decode(any_tok.encode("Cafe\u0301")) == "Caf\u00e9"


def test_specials_are_parsed_only_when_allowed(any_tok):
    s = any_tok.special
    text = "a<|extra_203|>b<|image start|><|visual token 000003|><|endoftext|>"
    ids = any_tok.encode(text, allow_special=True)
    assert ids == any_tok.encode("a") + [s.bos] + any_tok.encode("b") + [s.boi, s.visual_start + 3, s.pad]
    assert any_tok.decode(ids, skip_special=False) == text
    assert any_tok.decode(ids) == "ab"
    with pytest.raises(ValueError, match=r"'<\|extra_203\|>' at character 1.*allow_special=True"):
        any_tok.encode(text)


def test_special_like_text_that_is_not_special_stays_text(tok):
    # visual code 64 does not exist with a 64-entry codebook, and extra_205 is no Emu3 token
    for text in ("<|visual token 000064|>", "<|extra_205|>", "<|foo|>"):
        ids = tok.encode(text)
        assert all(i < tok.special.pad for i in ids) and tok.decode(ids) == text


def test_decode_skips_every_special_including_visual(tok):
    s = tok.special
    ids = [s.bos, *tok.encode("hi"), s.boi, s.visual_start, s.visual_start + 63, s.eol, s.eos, s.pad, s.boa]
    assert tok.decode(ids) == "hi"
    shown = tok.decode(ids, skip_special=False)
    assert shown.startswith("<|extra_203|>hi<|image start|><|visual token 000000|><|visual token 000063|>")


def test_token_lookup(tok):
    s = tok.special
    for name, role in [("<|extra_203|>", s.bos), ("<|image token|>", s.img), ("<|endoftext|>", s.pad)]:
        assert tok.token_to_id(name) == role
        assert tok.id_to_token(role) == name
    assert tok.token_to_id("<|visual token 000007|>") == s.visual_start + 7
    assert tok.id_to_token(s.visual_start + 7) == "<|visual token 000007|>"
    assert tok.token_to_id(tok.id_to_token(tok.encode("the")[0])) == tok.encode("the")[0]
    assert tok.token_bytes(tok.encode("a")[0]) == b"a"


def test_errors_are_clear(tok):
    with pytest.raises(ValueError, match="neither a special token nor a single token"):
        tok.token_to_id("<|not a token|>")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.id_to_token(-1)
    with pytest.raises(ValueError, match="special token"):
        tok.token_bytes(tok.special.bos)


def test_baai_folder_loads_like_the_fixture(tok, baai_folder):
    loaded = load_text_tokenizer(baai_folder)
    assert loaded.special == tok.special
    for text in ROUND_TRIP:
        assert loaded.encode(text) == tok.encode(text)


def test_hf_folder_maps_roles_by_name(tok, hf_folder):
    loaded = load_text_tokenizer(hf_folder)
    assert loaded.special == tok.special
    # the converter's <image> is <|extra_0|>; our names stay the official ones
    assert loaded.token_to_id("<|extra_0|>") == loaded.special.extra(0)
    assert loaded.encode("<image>") == tok.encode("<image>")


@pytest.mark.parametrize("backend", ["baai", "hf", "trained"])
def test_save_and_reload(backend, tok, trained_tok, hf_folder, tmp_path):
    original = {"baai": tok, "hf": load_text_tokenizer(hf_folder), "trained": trained_tok}[backend]
    original.save(tmp_path / "saved")
    reloaded = load_text_tokenizer(tmp_path / "saved")
    assert reloaded.special == original.special
    for text in ROUND_TRIP:
        assert reloaded.encode(text) == original.encode(text)


def test_trained_tokenizer_layout_and_size_check():
    small = train_text_tokenizer(CORPUS.splitlines(), 300, 16)
    assert small.special == special_layout(300, 16)
    assert small.vocab_size == 300 + 211 + 16
    with pytest.raises(ValueError, match="lower it"):
        train_text_tokenizer(["ab"], 400, 16)
    with pytest.raises(ValueError, match=">= 256"):
        train_text_tokenizer(["ab"], 100, 16)


def test_unknown_folder_lists_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="emu3_tokenizer.json.*emu3.tiktoken.*emu3_vision_tokens.txt"):
        load_text_tokenizer(tmp_path)


def test_malformed_vision_tokens_file(baai_folder, tmp_path):
    folder = write_baai_folder(tmp_path / "bad", codebook_size=4)
    (folder / "emu3_vision_tokens.txt").write_text(
        "<|image token|>\n<|image start|>\n<|image end|>\n<|visual token 000001|>\n"
    )
    with pytest.raises(ValueError, match="expected '<\\|visual token 000000\\|>'"):
        load_text_tokenizer(folder)


def test_full_codebook_is_arithmetic_not_registered(tmp_path):
    """32768 visual tokens are arithmetic, not registered tokens (registering them one by one made loading
    slow): no table of the tokenizer or its BPE backend grows with the codebook."""
    folders = [write_baai_folder(tmp_path / "a", 32768), write_hf_folder(tmp_path / "b", 32768)]
    for folder in folders:
        loaded = load_text_tokenizer(folder)
        assert loaded.special.codebook_size == 32768
        assert loaded.token_to_id("<|visual token 032767|>") == loaded.vocab_size - 1
        assert loaded.token_to_id("<|visual token 000000|>") == loaded.special.visual_start
        tables = [v for obj in (loaded, loaded.backend) for v in vars(obj).values() if isinstance(v, dict | list)]
        assert tables and all(len(t) < 32768 for t in tables), folder.name
