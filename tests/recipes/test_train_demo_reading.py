"""train-demo's reading check after pretraining: logged, and a warning when the decoder cannot bind."""

import json

import pytest

from emu3.recipes import train_demo
from emu3.recipes.train_demo import READING_FILE, DemoConfig, reading_check
from tests.helpers.tiny_pipeline import tiny_pipeline


class _Stop(Exception):
    """Raised in place of SFT: the stages up to pretraining are all these tests run."""


def test_a_decoder_that_cannot_read_gets_the_warning_and_its_remedy(tmp_path, capsys, monkeypatch):
    folder = tiny_pipeline(seed=0).save(tmp_path / "pretrained")  # random: it binds nothing
    out = reading_check(folder, DemoConfig(reading_check=6, image_size=32))
    assert out["n"] == 6 and 0.0 <= out["colour_binding"] <= 1.0 and 0.0 <= out["other_colour"] <= 1.0
    printed = capsys.readouterr().out
    assert "reading check:" in printed and "WARNING" in printed and "vq_from=shipped" in printed
    monkeypatch.setattr(train_demo, "READING_WARN", -1.0)  # every score passes
    reading_check(folder, DemoConfig(reading_check=6, image_size=32))
    assert "WARNING" not in capsys.readouterr().out


@pytest.mark.parametrize("n", [0, 4])
def test_train_demo_checks_the_pretrained_model_right_after_pretraining(tmp_path, capsys, monkeypatch, n):
    from emu3.convert.vq import save_vision_tokenizer
    from emu3.recipes import pretrain

    pipe = tiny_pipeline(seed=1)
    out = tmp_path / "run"
    save_vision_tokenizer(pipe.vq, out / "vq" / "model")
    monkeypatch.setattr(train_demo, "_tokenize_world", lambda *a: None)
    monkeypatch.setattr(pretrain, "main", lambda cfg: pipe.save(out / "pretrain" / "model"))
    monkeypatch.setattr(train_demo, "sft_config", lambda *a: (_ for _ in ()).throw(_Stop))
    with pytest.raises(_Stop):
        train_demo.main(DemoConfig(out=str(out), image_size=32, reading_check=n))
    printed = capsys.readouterr().out
    saved = out / "pretrain" / READING_FILE
    assert ("reading check:" in printed) == bool(n) and saved.exists() == bool(n)
    if n:
        assert json.loads(saved.read_text())["n"] == n
