"""train-demo's corpus: which world records go in, and how often."""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from emu3.recipes.train_demo import DemoConfig, _world_records

pytest.importorskip("sklearn")


@pytest.mark.parametrize("repeats", [0, 1, 3])
def test_each_real_digit_appears_digit_repeats_times_always_for_understanding_too(repeats):
    cfg = DemoConfig(captions=3, qa_images=2, qa_per_image=2, videos=1, digit_repeats=repeats, image_size=24)
    records = _world_records(cfg)
    digits = [r for r in records if "label" in r]
    per_image = Counter(r["image"].tobytes() for r in digits)
    assert len(digits) == 1437 * repeats  # scikit-learn's digits, the seeded 80% training split
    assert all(n % repeats == 0 for n in per_image.values())  # each image `repeats` times (or a multiple: twins)
    assert all(r["understanding"] == 1.0 for r in digits)
    assert len(records) - len(digits) == 3 + 2 + 1  # captions, question images, videos


def test_moved_digits_are_read_only_appended_after_the_world_and_kept_for_fine_tuning():
    from emu3.recipes.common import DataConfig, TrainConfig
    from emu3.recipes.train_demo import PRETRAIN_KINDS, sft_config
    from emu3.worlds import data, digits

    moved = list(data.digit_readings(2, seed=0, image_size=24))
    assert len(moved) == 2 * 1437
    assert all((r["generation"], r["understanding"], r["tag"]) == (0.0, 1.0, "aug") for r in moved)
    images, labels = digits.load_split("train", 24)
    assert [r["label"] for r in moved] == labels.tolist() * 2  # every training digit, copy after copy
    assert sum(np.array_equal(r["image"], images[i % 1437]) for i, r in enumerate(moved)) < 10  # all moved
    again = list(data.digit_readings(2, seed=0, image_size=24))
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(moved, again, strict=True))  # seeded
    base = TrainConfig(
        out="runs/d/pretrain",
        tokenizer="runs/d/tokenizer",
        data=DataConfig(corpus="runs/d/tokens", kinds=PRETRAIN_KINDS),
    )
    assert not any(":" in k for k in PRETRAIN_KINDS)  # pretraining never sees tagged examples
    assert sft_config(base, DemoConfig()).data.kinds == ("qa", "qa", "t2i", "i2t", "i2t:aug")  # as shipped
    cfg = DemoConfig(sft_qa_weight=2, sft_where_weight=3, question_first=True)
    assert sft_config(base, cfg).data.kinds == ("qa_first",) * 2 + ("t2i", "i2t", "i2t:aug") + ("qa_first:where",) * 3
    assert sft_config(base, DemoConfig(sft_t2i_weight=2)).data.kinds.count("t2i") == 2
    assert "qa_first" not in PRETRAIN_KINDS  # pretraining keeps the image-then-question conversations
    plain = DemoConfig(digit_augment=0, sft_qa_weight=1)
    assert sft_config(base, plain).data.kinds == ("qa", "t2i", "i2t")  # and no where-set without question_first


def test_the_chat_fine_tune_starts_from_the_pretrained_model_on_image_to_text_examples_only():
    from emu3.recipes.common import DataConfig, TrainConfig
    from emu3.recipes.train_demo import chat_config, sft_config

    base = TrainConfig(
        out="runs/d/pretrain",
        tokenizer="runs/d/tokenizer",
        steps=900,
        data=DataConfig(corpus="runs/d/tokens", seq_len=64),
    )
    cfg = DemoConfig(chat_steps=40, pretrain_lr=3e-3, question_first=True, question_twice=True, chat_from="pretrain")
    chat = chat_config(sft_config(base, cfg), cfg)
    assert (chat.init, chat.out, chat.steps) == ("runs/d/pretrain/model", "runs/d/chat", 40)
    assert chat.data.kinds == ("qa_first",) + ("qa_first:where",) * 3 + ("i2t",) + ("i2t:aug",) * 2
    assert chat.data.corpus == "runs/d/tokens" and chat.data.seq_len == 64
    plain = DemoConfig(chat_steps=40, chat_digit_weight=1, chat_question_first=False)  # BAAI's layout
    plain_chat = chat_config(sft_config(base, plain), plain)
    assert plain_chat.data.kinds == ("qa", "i2t", "i2t:aug") and plain_chat.init == "runs/d/dpo/model"
    # By default the chat model alone asks questions first (with the where-set); SFT stays as shipped.
    split = DemoConfig(chat_steps=40)
    assert chat_config(sft_config(base, split), split).data.kinds == chat.data.kinds
    assert sft_config(base, split).data.kinds == ("qa", "qa", "t2i", "i2t", "i2t:aug")
    with pytest.raises(ValueError, match="chat_from"):  # refused by the config, before any stage runs
        DemoConfig(chat_from="gen")
    assert chat.optim.lr == 1e-3 and base.init is None  # the SFT stage's rate; the base config is untouched


def test_a_tiling_tokenizer_is_trained_whole_first_then_on_tiles_round_by_round_then_on_more_clips(tmp_path):
    from emu3.recipes.train_demo import vq_configs

    cfg = DemoConfig(out=str(tmp_path), vq_steps=70, vq_tile_rounds=(30, 50), vq_tile_lr=5e-4, image_size=72,
                     vq_clip_steps=20, vq_clip_fraction=0.5)  # fmt: skip
    whole, first, second, clips = vq_configs(cfg)
    assert (whole.out, whole.init, whole.steps, whole.vq.tile_size) == (str(tmp_path / "vq-whole"), "", 70, 0)
    assert (first.init, first.steps, first.vq.tile_size) == (str(tmp_path / "vq-whole" / "model"), 30, 24)
    assert (second.init, second.steps) == (str(tmp_path / "vq-tiles1" / "model"), 50)
    assert (clips.out, clips.init, clips.steps) == (str(tmp_path / "vq"), str(tmp_path / "vq-tiles2" / "model"), 20)
    assert first.optim.lr == second.optim.lr == 5e-4 and whole.optim.lr == 2e-3 and clips.optim.lr == 2.5e-4
    assert clips.video_fraction == 0.5 and whole.video_fraction == first.video_fraction == 0.0625
    assert clips.vq.tile_size == 24
    assert {c.seed for c in (whole, first, clips)} == {0} and {c.image_size for c in (whole, first, clips)} == {72}
    assert {c.device for c in (whole, first, second, clips)} == {"cpu"}
    assert {c.device for c in vq_configs(replace(cfg, device="cuda"))} == {"cuda"}  # every round on the device
    assert {(c.clip_frames, c.vq.tile_videos) for c in (whole, first, second, clips)} == {(4, True)}  # as shipped
    video = vq_configs(replace(cfg, vq_clip_frames=16, vq_tile_videos=False))
    assert {(c.clip_frames, c.vq.tile_videos) for c in video} == {(16, False)}  # every round, tiled or not
    assert [c.vq.tile_size for c in video] == [0, 24, 24, 24]


def test_without_dpo_prompts_there_is_no_dpo_stage_and_the_chat_model_cannot_start_from_it():
    from emu3.recipes.train_demo import runs_dpo

    assert runs_dpo(DemoConfig()) and runs_dpo(DemoConfig(dpo_prompts=0, dpo_digit_prompts=8))
    assert not runs_dpo(DemoConfig(dpo_prompts=0, chat_steps=4, chat_from="sft"))
    with pytest.raises(ValueError, match="chat_from=sft"):  # refused up front, not after SFT
        DemoConfig(dpo_prompts=0, chat_steps=4)


def test_without_a_clip_round_the_last_tile_round_writes_the_tokenizer(tmp_path):
    from emu3.recipes.train_demo import vq_configs

    whole, tiles = vq_configs(DemoConfig(out=str(tmp_path), vq_tile_rounds=(30,), vq_clip_steps=0))
    assert (tiles.out, tiles.init, tiles.steps) == (str(tmp_path / "vq"), str(tmp_path / "vq-whole" / "model"), 30)


def test_a_whole_image_tokenizer_is_one_run(tmp_path):
    from emu3.recipes.train_demo import vq_configs

    yaml = tmp_path / "whole.yaml"
    yaml.write_text("vq:\n  codebook_size: 64\n  ch: 32\n  ch_mult: [1, 2]\n  num_res_blocks: 1\n  attn_levels: []\n")
    (only,) = vq_configs(DemoConfig(out=str(tmp_path), vq_config=str(yaml), vq_steps=9))
    assert (only.out, only.steps, only.vq.tile_size) == (str(tmp_path / "vq"), 9, 0)


def test_where_scenes_ask_where_each_object_is_that_has_one_answer():
    from emu3.worlds import data, shapes

    records = list(data.where_questions(50, seed=0, image_size=24))
    assert [r["qa"] for r in records] == [r["qa"] for r in data.where_questions(50, seed=0, image_size=24)]
    assert {len(r["scene"].objects) for r in records} == {2, 3} and {r["tag"] for r in records} == {"where"}
    for r in records:
        objs = r["scene"].objects
        unique = [o for o in objs if [(p.colour, p.shape) for p in objs].count((o.colour, o.shape)) == 1]
        assert r["qa"] == [(f"where is the {o.colour} {o.shape}?", shapes.position_phrase(o.cell)) for o in unique]
    assert len({a for r in records for _, a in r["qa"]}) == 9  # every cell of the layout is an answer


def test_each_checkpoint_is_asked_in_the_layout_it_was_trained_on(tmp_path):
    from emu3.generate.pipeline import PipelineConfig
    from emu3.recipes.train_demo import _write_pipeline_defaults

    cfg = DemoConfig(question_first=True, question_twice=True)
    _write_pipeline_defaults(tmp_path, cfg, fine_tuned=False)  # the pretrained model: image first
    assert (PipelineConfig.read(tmp_path).question_first, PipelineConfig.read(tmp_path).question_twice) == (False,) * 2
    _write_pipeline_defaults(tmp_path, cfg)  # the fine-tuned ones
    assert (PipelineConfig.read(tmp_path).question_first, PipelineConfig.read(tmp_path).question_twice) == (True,) * 2
    _write_pipeline_defaults(tmp_path, DemoConfig())
    assert PipelineConfig.read(tmp_path).question_first is False  # the shipped recipe: BAAI's layout


def test_a_question_first_chat_model_puts_questions_before_images_in_the_corpus_and_nowhere_else():
    from emu3.recipes.train_demo import asks_first, asks_twice

    assert not asks_first(DemoConfig()) and not asks_first(DemoConfig(chat_question_first=True))  # chat off
    assert asks_first(DemoConfig(chat_steps=10)) and asks_twice(DemoConfig(chat_steps=10))
    assert not asks_first(DemoConfig(chat_steps=10, chat_question_first=False))
    assert asks_twice(DemoConfig(chat_steps=10, question_first=True, question_twice=True))
    with pytest.raises(ValueError, match="question_twice"):  # SFT would read the twice-asked examples
        DemoConfig(chat_steps=10, question_first=True)


def test_the_round_trip_fine_tune_continues_the_chat_model_on_its_kinds_and_their_round_tripped_twins():
    from emu3.recipes.common import DataConfig, TrainConfig
    from emu3.recipes.train_demo import chat_config, chat_round_trip_config, round_trip_kind, sft_config

    base = TrainConfig(out="runs/d/pretrain", tokenizer="runs/d/tokenizer", data=DataConfig(corpus="runs/d/tokens"))
    cfg = DemoConfig(chat_steps=40, chat_round_trip_steps=7)
    chat = chat_config(sft_config(base, cfg), cfg)
    rt = chat_round_trip_config(sft_config(base, cfg), cfg)
    assert (rt.init, rt.out, rt.steps, rt.optim.lr) == ("runs/d/chat/model", "runs/d/chat_rt", 7, 1e-4)
    assert rt.data.kinds == chat.data.kinds + tuple(round_trip_kind(k) for k in chat.data.kinds)
    assert [round_trip_kind(k) for k in ("qa_first", "qa_first:where", "i2t", "i2t:aug")] == [
        "qa_first:rt", "qa_first:where_rt", "i2t:rt", "i2t:aug_rt"]  # fmt: skip
    twice = replace(cfg, chat_round_trip_weight=2)
    assert chat_round_trip_config(sft_config(base, twice), twice).data.kinds == rt.data.kinds + rt.data.kinds[
        len(chat.data.kinds) :]  # fmt: skip
    with pytest.raises(ValueError, match="chat_steps"):
        DemoConfig(chat_round_trip_steps=5)
    with pytest.raises(ValueError, match="chat_round_trip_weight"):
        DemoConfig(chat_steps=5, chat_round_trip_steps=5, chat_round_trip_weight=0)


def test_round_trip_records_hold_the_tokenizers_own_reconstructions_tagged_for_the_round_trip_kinds():
    import torch

    from emu3.recipes.train_demo import round_trip_records
    from emu3.vision.image_io import to_pixels, to_uint8
    from emu3.worlds import data
    from tests.helpers.tiny_pipeline import tiny_vq

    cfg = DemoConfig(chat_steps=4, chat_round_trip_steps=2, chat_round_trip_scenes=4, image_size=24)
    vq = tiny_vq()
    records = round_trip_records(cfg, vq, batch_size=512)
    tags = Counter(r["tag"] for r in records)
    assert tags == {"rt": 4 + 4, "where_rt": 2, "aug_rt": 1437}
    captioned = [r for r in records if r["tag"] == "rt" and "caption" in r]
    assert len(captioned) == 4 and all((r["generation"], r["understanding"]) == (0.0, 1.0) for r in captioned)
    originals = list(data.shapes_qa(4, seed=cfg.seed + 31, image_size=24, per_image=cfg.qa_per_image))
    for record, original in zip(records[:4], originals, strict=True):
        assert record["qa"] == original["qa"]  # the same questions, about the reconstruction
        with torch.no_grad():
            expected = to_uint8(vq.decode_image(vq.encode_image(to_pixels(original["image"], 4)[None]))[0])
        assert np.array_equal(record["image"], expected) and not np.array_equal(record["image"], original["image"])


def test_jpeg_copies_join_the_round_trip_stage_as_their_own_kinds():
    from emu3.recipes.common import DataConfig, TrainConfig
    from emu3.recipes.train_demo import chat_config, chat_round_trip_config, round_trip_kind, sft_config

    base = TrainConfig(out="runs/d/pretrain", tokenizer="runs/d/tokenizer", data=DataConfig(corpus="runs/d/tokens"))
    cfg = DemoConfig(chat_steps=40, chat_round_trip_steps=7, chat_jpeg_scenes=10, chat_round_trip_weight=2)
    chat = chat_config(sft_config(base, cfg), cfg)
    kinds = chat_round_trip_config(sft_config(base, cfg), cfg).data.kinds
    copies = tuple(round_trip_kind(k) for k in chat.data.kinds) + tuple(
        round_trip_kind(k, "jpeg") for k in chat.data.kinds
    )
    assert kinds == chat.data.kinds + copies * 2
    assert (
        round_trip_kind("qa_first", "jpeg") == "qa_first:jpeg" and round_trip_kind("i2t:aug", "jpeg") == "i2t:aug_jpeg"
    )
    with pytest.raises(ValueError, match="chat_round_trip_steps"):
        DemoConfig(chat_steps=5, chat_jpeg_scenes=10)
    with pytest.raises(ValueError, match="chat_jpeg_scenes"):
        DemoConfig(chat_steps=5, chat_round_trip_steps=5, chat_jpeg_scenes=-1)


def test_jpeg_records_are_jpeg_copies_of_fresh_scenes_with_their_questions():
    from emu3.recipes.train_demo import jpeg_records
    from emu3.vision.image_io import jpeg_copy
    from emu3.worlds import data

    cfg = DemoConfig(chat_steps=4, chat_round_trip_steps=2, chat_jpeg_scenes=6, image_size=24, digit_augment=False)
    records = jpeg_records(cfg)
    assert Counter(r["tag"] for r in records) == {"jpeg": 6 + 6, "where_jpeg": 3}
    originals = list(data.shapes_qa(6, seed=cfg.seed + 37, image_size=24, per_image=cfg.qa_per_image))
    for record, original in zip(records[:6], originals, strict=True):
        assert record["qa"] == original["qa"]
        assert not np.array_equal(record["image"], original["image"])  # JPEG loses something
        # and at some quality in 50-95 it is exactly that image's JPEG copy
        assert any(np.array_equal(record["image"], jpeg_copy(original["image"], q)) for q in range(50, 96))
    with pytest.raises(ValueError, match="quality"):
        jpeg_copy(originals[0]["image"], 100)
