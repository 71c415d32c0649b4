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


def test_train_vq_with_the_patch_gan_resumes_exactly(tmp_path):
    import json

    from safetensors import safe_open

    args = ["steps=4", "image_size=32", "batch_size=4", "log_every=1000", "restart_every=0", "eval_images=4",
            "save_every=2", "video_fraction=0.25", "gan_weight=0.1", "gan_start=1"]  # fmt: skip
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'a'}", "resume=false", *args]))
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'b'}", *args, "steps=2"]))
    folder = main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'b'}", *args]))
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("a", "b")]  # fmt: skip
    assert [r["loss"] for r in rows[0][2:]] == [r["loss"] for r in rows[1][2:]]
    assert [r["critic"] for r in rows[0][2:]] == [r["critic"] for r in rows[1][2:]]
    assert rows[0][0]["adversarial"] == 0.0 and rows[0][1]["adversarial"] != 0.0  # counts from gan_start on
    with safe_open(tmp_path / "a" / "step_000004" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("critic.") for k in keys) and any(k.startswith("vq.") for k in keys)
    assert load_vision_tokenizer(folder).cfg.codebook_size == 256  # the exported tokenizer has no critic


def test_train_vq_takes_longer_clips_and_rejects_ragged_ones(tmp_path, capsys):
    args = ["steps=2", "image_size=32", "batch_size=4", "log_every=1000", "restart_every=0", "eval_images=4",
            "save_every=2", "video_fraction=0.5", "video_clips=3"]  # fmt: skip
    with pytest.raises(ValueError, match="clip_frames must be a positive multiple of 4"):
        main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'bad'}", *args, "clip_frames=6"]))
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    folder = main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'ok'}", *args, "clip_frames=8"]))
    assert load_vision_tokenizer(folder).cfg.codebook_size == 256
    assert " 3 clips;" in capsys.readouterr().out  # drawn from `video_clips` distinct clips


def test_train_vq_with_the_locality_loss_logs_it_and_resumes_exactly(tmp_path):
    import json

    args = ["steps=4", "image_size=32", "batch_size=4", "log_every=1000", "restart_every=0", "eval_images=4",
            "save_every=2", "video_fraction=0.25", "locality_weight=1.0", "locality_images=2"]  # fmt: skip
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'a'}", "resume=false", *args]))
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'b'}", *args, "steps=2"]))
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'b'}", *args]))
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("a", "b")]  # fmt: skip
    assert [r["loss"] for r in rows[0][2:]] == [r["loss"] for r in rows[1][2:]]
    assert all(r["locality"] > 0 for r in rows[0])


def test_train_vq_fine_tunes_a_saved_tokenizer(tmp_path):
    base = ["image_size=32", "batch_size=4", "log_every=1000", "restart_every=0", "eval_images=4", "save_every=100"]
    first = main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", [f"out={tmp_path / 'a'}", "steps=30", *base]))
    trained = float((tmp_path / "a" / "psnr.txt").read_text().splitlines()[1].split()[1])
    # init= starts from the trained weights: the fine-tune's initial PSNR is the first run's result
    args = [f"out={tmp_path / 'b'}", f"init={first}", "steps=2", *base]
    main(load(VQTrainConfig, "configs/train_vq/tiny.yaml", args))
    label, start = (tmp_path / "b" / "psnr.txt").read_text().splitlines()[0].split()[:2]
    assert label == "initial" and abs(float(start) - trained) < 0.01


@pytest.mark.parametrize("fraction", [1.0, 0.97, -0.1, 1.5])
def test_train_vq_refuses_a_video_fraction_that_leaves_no_image(fraction):
    # 0.97 of 16 rounds to 16 clips: no image would be left for the losses that read them
    with pytest.raises(ValueError, match="leaves no image in a batch of 16"):
        VQTrainConfig(batch_size=16, video_fraction=fraction)
    assert VQTrainConfig(batch_size=16, video_fraction=0.94).video_fraction == 0.94  # 15 clips, one image
    with pytest.raises(ValueError, match="video_clips must be at least 1"):
        VQTrainConfig(video_fraction=0.25, video_clips=0)
