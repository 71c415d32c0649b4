"""train-demo's DPO rounds: each round samples fresh prompts from the previous round's model and starts there."""

import random
from dataclasses import replace
from pathlib import Path

import pytest

from emu3.data.shards import Example, write_shard
from emu3.recipes import train_demo
from emu3.recipes.train_demo import (
    DemoConfig,
    chat_config,
    dpo_prompts,
    dpo_stage,
    gen_config,
    generation_stage,
    pretrain_config,
    sft_config,
    tuned_stage,
)


def test_round_one_keeps_its_prompts_and_each_later_round_draws_other_scenes():
    from emu3.worlds import shapes

    cfg = DemoConfig(dpo_prompts=20, use_digits=False)
    first, _ = dpo_prompts(cfg)
    rng = random.Random(7)  # round one as before rounds existed: seed + 7
    scenes = [shapes.sample_scene(rng) for _ in range(20)]
    assert first == [shapes.caption(s, rng) for s in scenes]
    assert dpo_prompts(cfg, 1)[0] == first
    second, third = dpo_prompts(cfg, 2)[0], dpo_prompts(cfg, 3)[0]
    assert len({tuple(first), tuple(second), tuple(third)}) == 3
    assert second == dpo_prompts(replace(cfg, seed=100))[0]  # round 2 of seed 0 is round 1 of seed 100


def test_the_last_round_is_what_gen_chat_and_the_export_start_from():
    cfg = DemoConfig(dpo_rounds=3, gen_steps=5, chat_steps=5)
    assert [dpo_stage(r) for r in (1, 2, 3)] == ["dpo", "dpo_r2", "dpo_r3"]
    assert tuned_stage(cfg) == "dpo_r3" and generation_stage(replace(cfg, gen_steps=0)) == "dpo_r3"
    run = Path("runs/d")
    sft = sft_config(pretrain_config(cfg, run, run / "tokenizer", run / "vq", run / "tokens"), cfg)
    assert gen_config(sft, cfg).init == chat_config(sft, cfg).init == "runs/d/dpo_r3/model"
    assert chat_config(sft, replace(cfg, chat_from="sft")).init == "runs/d/sft/model"
    assert tuned_stage(DemoConfig()) == "dpo" and tuned_stage(DemoConfig(dpo_prompts=0)) == "sft"


def test_no_rounds_is_refused_up_front():
    with pytest.raises(ValueError, match="dpo_rounds"):
        DemoConfig(dpo_rounds=0)


def test_each_round_samples_from_and_trains_from_the_round_before(tmp_path, monkeypatch):
    from emu3.recipes import dpo

    out = tmp_path / "demo"
    for done in ("vq/model/config.json", "tokens/meta.json", "pretrain/model/config.json", "sft/model/config.json"):
        (out / done).parent.mkdir(parents=True, exist_ok=True)
        (out / done).write_text("{}")
    sampled, trained = [], []

    def fake_pairs(cfg, model_dir, prefs, r=1):
        sampled.append((Path(model_dir).relative_to(out).as_posix(), prefs.name, r))
        pair = [Example([1, 2, 3], [-100, 2, 3], "chosen"), Example([1, 2, 4], [-100, 2, 4], "rejected")]
        write_shard(prefs, "pairs", pair * 8)
        return {"pairs": 8}

    def fake_dpo(dcfg):
        trained.append((Path(dcfg.init).relative_to(out).as_posix(), Path(dcfg.out).name))
        (Path(dcfg.out) / "model").mkdir(parents=True)
        (Path(dcfg.out) / "model" / "config.json").write_text("{}")

    exported = []
    monkeypatch.setattr(train_demo, "_preference_pairs", fake_pairs)
    monkeypatch.setattr(dpo, "main", fake_dpo)

    def fake_export(src, dst, cfg):
        exported.append(src)
        dst.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(train_demo, "_export", fake_export)
    train_demo.main(DemoConfig(out=str(out), dpo_rounds=3))
    assert sampled == [("sft/model", "preferences", 1), ("dpo/model", "preferences_r2", 2),
                       ("dpo_r2/model", "preferences_r3", 3)]  # fmt: skip
    assert trained == [("sft/model", "dpo"), ("dpo/model", "dpo_r2"), ("dpo_r2/model", "dpo_r3")]
    assert exported == [out / "dpo_r3" / "model"]
    sampled.clear(), trained.clear()
    train_demo.main(DemoConfig(out=str(out), dpo_rounds=3))  # every round done: nothing sampled or trained
    assert sampled == trained == []
