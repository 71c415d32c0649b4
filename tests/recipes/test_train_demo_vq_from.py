"""train-demo's `vq_from`: a trained vision tokenizer copied in place of the VQ stage."""

import json
import random

import pytest
import torch

from emu3.convert.vq import load_vision_tokenizer, save_vision_tokenizer
from emu3.recipes import train_demo
from emu3.recipes.train_demo import SHIPPED_MODEL, DemoConfig, copy_vision_tokenizer, vq_from_folder
from emu3.vision.image_io import to_pixels
from emu3.worlds import shapes
from tests.helpers.tiny_pipeline import tiny_vq


class _TokensReached(Exception):
    """Raised in place of the token stage: the VQ stage is all these tests run."""


def _scenes(vq, n: int = 4) -> torch.Tensor:
    rng = random.Random(3)
    size, multiple = 4 * vq.cfg.pixel_multiple, vq.cfg.pixel_multiple
    return torch.stack([to_pixels(shapes.render(shapes.sample_scene(rng), size), multiple) for _ in range(n)])


def _codes(vq, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vq.encode_image(pixels)


def _stop_at_tokens(*args, **kwargs):
    raise _TokensReached


def test_vq_from_copies_the_tokenizer_and_trains_none(tmp_path, monkeypatch):
    source = tmp_path / "trained"
    vq = tiny_vq(seed=5)
    save_vision_tokenizer(vq, source)
    monkeypatch.setattr(train_demo, "_tokenize_world", _stop_at_tokens)
    out = tmp_path / "run"
    with pytest.raises(_TokensReached):
        train_demo.main(DemoConfig(out=str(out), vq_from=str(source)))
    copy = load_vision_tokenizer(out / "vq" / "model")  # strict: every tensor, every shape
    pixels = _scenes(vq)
    assert torch.equal(_codes(copy, pixels), _codes(vq, pixels))
    assert sorted(p.name for p in out.iterdir()) == ["vq"]  # no vq-whole / vq-tiles runs
    assert sorted(p.name for p in (out / "vq").iterdir()) == ["model"]
    with pytest.raises(_TokensReached):  # resumed: the copy is reused as a trained VQ would be
        train_demo.main(DemoConfig(out=str(out), vq_from=str(tmp_path / "moved-away")))


def test_vq_from_shipped_is_the_shipped_models_own_tokenizer(tmp_path):
    assert vq_from_folder("shipped") == SHIPPED_MODEL
    assert copy_vision_tokenizer("shipped", tmp_path / "vq") == SHIPPED_MODEL
    shipped, copy = load_vision_tokenizer(SHIPPED_MODEL), load_vision_tokenizer(tmp_path / "vq" / "model")
    assert json.loads((tmp_path / "vq" / "model" / "config.json").read_text())["model_type"] == "emu3_vqgan"
    pixels = _scenes(shipped, n=2)
    assert torch.equal(_codes(copy, pixels), _codes(shipped, pixels))


def test_a_bad_vq_from_is_refused_before_anything_is_written(tmp_path):
    from emu3.convert.safetensors_io import CheckpointError

    with pytest.raises(FileNotFoundError, match="vq_from='nowhere'"):
        train_demo.main(DemoConfig(out=str(tmp_path / "a"), vq_from="nowhere"))
    assert not (tmp_path / "a" / "vq").exists()
    other = tmp_path / "not-a-vq"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not an Emu3 vision tokenizer"):
        train_demo.main(DemoConfig(out=str(tmp_path / "b"), vq_from=str(other)))
    assert not (tmp_path / "b" / "vq").exists()
