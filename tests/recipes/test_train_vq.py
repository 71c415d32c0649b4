"""The VQ training recipe learns (PSNR well above the untrained model) and resumes."""

import pytest

from emu3.configuration import load
from emu3.convert.vq import load_vision_tokenizer
from emu3.recipes.train_vq import VQTrainConfig, main


@pytest.mark.slow
def test_train_vq_learns_long(tmp_path):
    cfg = load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path}", "steps=300", "log_every=1000"])
    main(cfg)
    untrained, trained = (float(line.split()[1]) for line in (tmp_path / "psnr.txt").read_text().splitlines())
    assert trained > untrained + 10


def test_train_vq_improves_and_saves(tmp_path):
    cfg = load(VQTrainConfig, "configs/train_vq/tiny.yaml",
               [f"out={tmp_path}", "steps=40", "image_size=32", "batch_size=8", "log_every=1000",
                "restart_every=20", "save_every=20", "eval_images=16"])  # fmt: skip
    folder = main(cfg)
    untrained, trained = (float(line.split()[1]) for line in (tmp_path / "psnr.txt").read_text().splitlines())
    assert trained > untrained + 3
    assert load_vision_tokenizer(folder).cfg.codebook_size == 256
