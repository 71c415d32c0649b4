"""A tiny world corpus shared by the recipe tests: random tiny VQ, trained tokenizer, token shards."""

import pytest

from emu3.convert.vq import save_vision_tokenizer
from emu3.data.pretokenize import PretokenizeConfig, pretokenize
from emu3.tokens.text import train_text_tokenizer
from emu3.vision.config import tiny as tiny_vq_config
from emu3.vision.vq import build_vq
from emu3.worlds import data

IMAGE = 32  # with the tiny VQ (4x) an image is an 8x8 grid


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    vq = build_vq(tiny_vq_config(codebook_size=64), seed=0).eval()
    save_vision_tokenizer(vq, root / "vq")
    records = list(data.shapes_captions(160, seed=0, image_size=IMAGE)) + list(
        data.shapes_qa(60, seed=0, image_size=IMAGE)
    )
    texts = [r.get("caption", "") for r in records] + [f"{q} {a}" for r in records for q, a in r.get("qa", [])]
    tok = train_text_tokenizer(texts, vocab_size=300, codebook_size=64)
    tok.save(root / "tok")
    stats = pretokenize(records, root / "corpus", vq, tok, PretokenizeConfig(shard_size=100), progress=False)
    assert stats["skipped"] == 0
    return root
