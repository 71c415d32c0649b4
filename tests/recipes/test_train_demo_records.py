"""train-demo's corpus: which world records go in, and how often."""

from collections import Counter

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


def test_the_chat_fine_tune_starts_from_the_pretrained_model_on_image_to_text_examples_only():
    from emu3.recipes.common import DataConfig, TrainConfig
    from emu3.recipes.train_demo import chat_config, sft_config

    base = TrainConfig(
        out="runs/d/pretrain",
        tokenizer="runs/d/tokenizer",
        steps=900,
        data=DataConfig(corpus="runs/d/tokens", seq_len=64),
    )
    cfg = DemoConfig(chat_steps=40, pretrain_lr=3e-3)
    chat = chat_config(sft_config(base, cfg), cfg)
    assert (chat.init, chat.out, chat.steps) == ("runs/d/pretrain/model", "runs/d/chat", 40)
    assert chat.data.kinds == ("qa", "i2t") and chat.data.corpus == "runs/d/tokens" and chat.data.seq_len == 64
    assert chat.optim.lr == 1e-3 and base.init is None  # the SFT stage's rate; the base config is untouched
