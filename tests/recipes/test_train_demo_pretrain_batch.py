"""train-demo's `pretrain_batch_size`: pretraining's rows per step, while the later stages keep batch_size."""

import pytest

from emu3.convert.vq import save_vision_tokenizer
from emu3.recipes import pretrain, train_demo
from emu3.recipes.train_demo import DemoConfig
from tests.helpers.tiny_pipeline import tiny_vq


class _Pretraining(Exception):
    """Raised in place of pretraining, carrying the config it was given."""


def _capture(cfg):
    raise _Pretraining(cfg)


@pytest.mark.parametrize(("pretrain_batch", "expected"), [(0, 16), (32, 32)])
def test_pretraining_takes_its_own_batch_and_the_fine_tunes_keep_theirs(
    tmp_path, monkeypatch, pretrain_batch, expected
):
    source = tmp_path / "vq"
    save_vision_tokenizer(tiny_vq(seed=5), source)
    monkeypatch.setattr(train_demo, "_tokenize_world", lambda *args, **kwargs: None)
    monkeypatch.setattr(pretrain, "main", _capture)
    cfg = DemoConfig(out=str(tmp_path / "run"), vq_from=str(source), pretrain_batch_size=pretrain_batch)
    with pytest.raises(_Pretraining) as caught:
        train_demo.main(cfg)
    assert caught.value.args[0].data.batch_size == expected
    out = tmp_path / "run"
    base = train_demo.pretrain_config(cfg, out, out / "tokenizer", out / "vq", out / "tokens")
    assert train_demo.sft_config(base, cfg).data.batch_size == 16
    assert train_demo.reading_config(base, cfg).data.batch_size == 16


def test_a_negative_pretrain_batch_is_refused():
    with pytest.raises(ValueError, match="pretrain_batch_size=-1"):
        DemoConfig(pretrain_batch_size=-1)
