"""train-demo's `bf16` switch reaches every decoder stage: pretraining, the fine-tunes derived from it, DPO."""

from pathlib import Path

import pytest

from emu3.data.shards import Example, write_shard
from emu3.recipes.train_demo import (
    DemoConfig,
    chat_config,
    chat_round_trip_config,
    dpo_config,
    gen_config,
    pretrain_config,
    reading_config,
    sft_config,
)


@pytest.mark.parametrize("bf16", [True, False])
def test_every_decoder_stage_trains_at_the_demo_configs_precision(tmp_path, bf16):
    cfg = DemoConfig(bf16=bf16, gen_steps=5, chat_steps=5, chat_round_trip_steps=5)
    run = Path("runs/d")
    base = pretrain_config(cfg, run, run / "tokenizer", run / "vq", run / "tokens")
    sft = sft_config(base, cfg)
    stages = [base, reading_config(base, cfg), sft, gen_config(sft, cfg), chat_config(sft, cfg)]
    stages.append(chat_round_trip_config(sft, cfg))
    assert [s.bf16 for s in stages] == [bf16] * 6
    assert base.vq == "runs/d/vq/model" and sft.init == "runs/d/pretrain/model"
    pair = [Example([1, 2, 3], [-100, 2, 3], "chosen"), Example([1, 2, 4], [-100, 2, 4], "rejected")]
    write_shard(tmp_path / "prefs", "pairs", pair * 8)
    dpo = dpo_config(cfg, run / "sft" / "model", tmp_path / "prefs", run / "dpo")
    assert dpo.bf16 is bf16 and dpo.steps == 1  # 8 pairs, 8 a step, one pass


def test_the_default_keeps_bf16_autocast():
    assert DemoConfig().bf16 is True
