"""Tiny tokenizers for the token tests, built in the session (tests/helpers/tiny_tokenizers.py)."""

from pathlib import Path

import pytest

from emu3.tokens.text import TextTokenizer
from tests.helpers.tiny_tokenizers import (
    tiny_text_tokenizer,
    tiny_trained_tokenizer,
    write_baai_folder,
    write_hf_folder,
)


@pytest.fixture(scope="session")
def tok() -> TextTokenizer:
    return tiny_text_tokenizer()


@pytest.fixture(scope="session")
def trained_tok() -> TextTokenizer:
    return tiny_trained_tokenizer()


@pytest.fixture(scope="session")
def baai_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_baai_folder(tmp_path_factory.mktemp("baai"))


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hf_folder(tmp_path_factory.mktemp("hf"))
