"""train-demo's generation-only fine-tune (the gen stage): what it reads, where it starts, what it exports."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from emu3.recipes.train_demo import DemoConfig, fine_tune_records, gen_config, generation_stage, sft_config

pytest.importorskip("sklearn")


def _base():
    from emu3.recipes.common import DataConfig, TrainConfig

    return TrainConfig(out="runs/d/pretrain", tokenizer="runs/d/tokenizer", steps=900,
                       data=DataConfig(corpus="runs/d/tokens", seq_len=64))  # fmt: skip


def test_digit_drawings_are_every_real_training_digit_once_to_draw_only():
    from emu3.worlds import data, digits

    drawn = list(data.digit_drawings(image_size=24))
    images, labels = digits.load_split("train", 24)
    assert [r["label"] for r in drawn] == labels.tolist()
    assert all(np.array_equal(r["image"], images[i]) for i, r in enumerate(drawn))  # as they are, not moved
    assert all((r["generation"], r["understanding"], r["tag"]) == (1.0, 0.0, "digit") for r in drawn)
    assert [r["caption"] for r in drawn[:3]] == [digits.caption(int(y)) for y in labels[:3]]


def test_turning_the_gen_stage_on_appends_the_digits_to_draw_and_moves_nothing_before_them():
    cfg = DemoConfig(image_size=24, where_scenes=3, chat_steps=5)  # moved digits and the where-set on
    before, after = fine_tune_records(cfg), fine_tune_records(replace(cfg, gen_steps=5))
    assert len(after) == len(before) + 1437
    same = zip(before, after[: len(before)], strict=True)
    assert all(a.get("tag") == b.get("tag") and np.array_equal(a["image"], b["image"]) for a, b in same)
    assert {r["tag"] for r in after[len(before) :]} == {"digit"}
    no_digits = fine_tune_records(replace(cfg, gen_steps=5, use_digits=False))
    assert {r["tag"] for r in no_digits} == {"where"}  # nothing to draw without the digits


def test_the_gen_stage_starts_from_the_dpo_model_and_draws_the_digits_gen_digit_weight_times():
    cfg = DemoConfig(gen_steps=150, gen_digit_weight=4, gen_lr=2e-4)
    gen = gen_config(sft_config(_base(), cfg), cfg)
    assert (gen.init, gen.out, gen.steps) == ("runs/d/dpo/model", "runs/d/gen", 150)
    assert gen.data.kinds == ("t2i",) + ("t2i:digit",) * 4  # text -> image only
    assert (gen.optim.lr, gen.optim.min_lr) == (2e-4, pytest.approx(2e-5))
    assert gen.data.corpus == "runs/d/tokens" and gen.data.seq_len == 64
    no_dpo = DemoConfig(gen_steps=10, dpo_prompts=0)
    assert gen_config(sft_config(_base(), no_dpo), no_dpo).init == "runs/d/sft/model"
    assert [generation_stage(c) for c in (DemoConfig(), cfg, no_dpo, DemoConfig(dpo_prompts=0))] == [
        "dpo", "gen", "gen", "sft",
    ]  # fmt: skip
    shapes_only = DemoConfig(gen_steps=10, use_digits=False)
    assert gen_config(sft_config(_base(), shapes_only), shapes_only).data.kinds == ("t2i",)
    with_videos = DemoConfig(gen_steps=10, gen_digit_weight=2, gen_video_weight=3)
    assert gen_config(sft_config(_base(), with_videos), with_videos).data.kinds == (
        ("t2i",) + ("t2i:digit",) * 2 + ("t2v",) * 3
    )


@pytest.mark.parametrize(
    "bad", [{"gen_steps": -1}, {"gen_digit_weight": -2}, {"gen_video_weight": -1}, {"gen_steps": 5, "gen_lr": 0.0}]
)
def test_a_bad_gen_setting_is_refused_before_any_stage_runs(bad):
    with pytest.raises(ValueError, match="gen_"):
        DemoConfig(**bad)
    DemoConfig(gen_lr=0.0)  # no gen stage: its learning rate is never used


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A train-demo folder whose stages up to DPO are done (a tiny random model as the DPO model), with a
    corpus of a few shapes scenes and digits to draw."""
    from emu3.convert.vq import save_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.worlds import data
    from tests.helpers.tiny_pipeline import save_tiny_pipeline, tiny_pipeline

    out = tmp_path_factory.mktemp("demo")
    pipe = tiny_pipeline(seed=0)
    save_tiny_pipeline(out / "dpo", pipe)  # dpo/model (decoder, tokenizer) and dpo/vq
    save_vision_tokenizer(pipe.vq, out / "vq" / "model")
    pipe.tok.save(out / "tokenizer")
    for done in ("pretrain/model/config.json", "sft/model/config.json", "preferences/meta.json"):
        (out / done).parent.mkdir(parents=True, exist_ok=True)
        (out / done).write_text("{}")
    records = [{**r, "understanding": 0.0} for r in data.shapes_captions(4, image_size=32)]
    drawings = list(data.digit_drawings(image_size=32))[:6]
    pcfg = PretokenizeConfig(understanding=0.0, null_caption=0.0, shard_size=100)
    pretokenize(records, out / "tokens-plain", pipe.vq, pipe.tok, pcfg, progress=False)
    pretokenize(records + drawings, out / "tokens-drawn", pipe.vq, pipe.tok, pcfg, progress=False)
    return out


def _run(prepared, tmp_path, corpus: str):
    """A copy of the prepared folder whose token corpus is `corpus`."""
    import shutil

    run = shutil.copytree(prepared, tmp_path / "run")
    (run / corpus).rename(run / "tokens")
    return run


def _cfg(out, **kw):
    return DemoConfig(out=str(out), image_size=32, seq_len=128, batch_size=2, gen_steps=2, **kw)


def test_train_demo_refuses_a_corpus_tokenised_without_the_digits_to_draw(prepared, tmp_path):
    from emu3.recipes import train_demo

    run = _run(prepared, tmp_path, "tokens-plain")
    with pytest.raises(SystemExit, match="delete that folder"):
        train_demo.main(_cfg(run))
    assert not (run / "gen").exists()


def test_train_demo_refuses_to_draw_videos_from_a_corpus_without_clips(prepared, tmp_path):
    from emu3.recipes import train_demo

    run = _run(prepared, tmp_path, "tokens-drawn")  # digits to draw, no clips
    with pytest.raises(SystemExit, match="no clips"):
        train_demo.main(_cfg(run, gen_video_weight=1))
    assert not (run / "gen").exists()
    with pytest.raises(ValueError, match="videos=0 makes none"):
        _cfg(run, gen_video_weight=1, videos=0)


def test_train_demo_exports_the_gen_stage_model_as_the_generation_model(prepared, tmp_path):
    from emu3.convert.decoder import load_decoder
    from emu3.recipes import train_demo

    run = _run(prepared, tmp_path, "tokens-drawn")
    final = train_demo.main(_cfg(run, export=str(tmp_path / "model")))
    shipped = load_decoder(final, dtype=torch.float32).state_dict()
    gen = load_decoder(run / "gen" / "model", dtype=torch.float32).state_dict()
    dpo = load_decoder(run / "dpo" / "model", dtype=torch.float32).state_dict()
    assert all(torch.equal(v, gen[k].to(torch.bfloat16).float()) for k, v in shipped.items())  # stored in bf16
    assert any(not torch.equal(v, dpo[k]) for k, v in gen.items())  # trained, from the DPO model
    log = json.loads((final / "training_log.json").read_text())
    assert log["stages"]["dpo"] == "reused" and "gen" in log["seconds"] and log["gen_last"]["step"] == 2
    rows = [json.loads(line) for line in (run / "gen" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
