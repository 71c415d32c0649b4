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


def test_train_vq_resume_gives_the_same_next_loss(tmp_path):
    import json

    args = ["steps=6", "image_size=32", "batch_size=4", "log_every=1000", "restart_every=3", "eval_images=4",
            "save_every=3", "video_fraction=0.5"]  # fmt: skip
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'a'}", "resume=false", *args]))
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'b'}", *args[:1], "steps=3", *args[1:]]))
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'b'}", *args]))
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("a", "b")]  # fmt: skip
    assert losses[0][3:] == losses[1][3:] and len(losses[1]) == 6
