"""train-demo's reading check after pretraining, and the reading stage that a decoder failing it gets."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from emu3.recipes import train_demo
from emu3.recipes.train_demo import (
    READING_FILE,
    DemoConfig,
    chat_config,
    needs_reading_stage,
    pretrain_config,
    reading_check,
    reading_config,
    sft_config,
)
from tests.helpers.tiny_pipeline import tiny_pipeline


class _Stop(Exception):
    """Raised in place of SFT: the stages up to SFT's start are all these tests run."""


def test_the_check_asks_the_binding_questions_and_says_what_it_read(tmp_path, capsys):
    folder = tiny_pipeline(seed=0).save(tmp_path / "pretrained")  # random: it binds nothing
    out = reading_check(folder, DemoConfig(reading_check=6, image_size=32))
    assert out["n"] == 6 and 0.0 <= out["colour_binding"] <= 1.0 and 0.0 <= out["other_colour"] <= 1.0
    assert "reading check" in capsys.readouterr().out


@pytest.mark.parametrize("repair", [True, False])
def test_a_failed_check_says_what_comes_next(tmp_path, capsys, monkeypatch, repair):
    stage = tmp_path / "pretrain"
    tiny_pipeline(seed=0).save(stage / "model")
    cfg = DemoConfig(reading_check=6, image_size=32)
    monkeypatch.setattr(train_demo, "READING_WARN", 2.0)  # every score fails
    written = train_demo._check_reading(stage, cfg, repair=repair)
    assert json.loads((stage / READING_FILE).read_text()) == written
    printed = capsys.readouterr().out
    assert ("reading stage trains it" in printed) == repair
    assert ("WARNING" in printed) != repair and ("vq_from=shipped" in printed) != repair
    monkeypatch.setattr(train_demo, "READING_WARN", -1.0)  # every score passes
    train_demo._check_reading(stage, cfg, repair=repair)
    printed = capsys.readouterr().out
    assert "WARNING" not in printed and "reading stage trains it" not in printed


def test_the_stage_runs_only_for_a_failed_check_and_when_on():
    failed, passed = {"colour_binding": 0.5}, {"colour_binding": 0.9}
    assert needs_reading_stage(DemoConfig(), failed)
    assert not needs_reading_stage(DemoConfig(), passed)
    assert not needs_reading_stage(DemoConfig(reading_steps=0), failed)
    assert not needs_reading_stage(DemoConfig(), None)  # no check, no stage
    assert not needs_reading_stage(DemoConfig(reading_check=0), failed)  # turned off on a resumed run


def test_the_stage_trains_on_the_questions_and_some_drawings_from_the_pretrained_model_at_its_rate():
    cfg = DemoConfig(reading_steps=7, pretrain_lr=2e-3)
    run = Path("runs/d")
    base = pretrain_config(cfg, run, run / "tokenizer", run / "vq", run / "tokens")
    reading = reading_config(base, cfg)
    assert reading.init == "runs/d/pretrain/model" and reading.out == "runs/d/reading"
    assert reading.data.kinds == ("qa",) * 8 + ("t2i",) and reading.steps == 7 and reading.optim.lr == 2e-3
    assert reading.loss == base.loss and reading.data.corpus == base.data.corpus and reading.model == base.model
    sft = sft_config(base, cfg, init=run / "reading" / "model")
    assert sft.init == "runs/d/reading/model" and sft_config(base, cfg).init == "runs/d/pretrain/model"
    assert chat_config(sft, replace(cfg, chat_steps=5, chat_from="pretrain")).init == "runs/d/reading/model"
    alone = replace(cfg, reading_kinds=("qa",))  # the questions alone (the stage before 2026-11-28)
    assert reading_config(base, alone).data.kinds == ("qa",)


def test_bad_reading_settings_are_refused_up_front():
    with pytest.raises(ValueError, match="reading_steps"):
        DemoConfig(reading_steps=-1)
    with pytest.raises(ValueError, match="qa_images"):
        DemoConfig(qa_images=0)
    DemoConfig(qa_images=0, reading_steps=0)
    with pytest.raises(ValueError, match="reading_kinds"):
        DemoConfig(reading_kinds=("t2i",))
    DemoConfig(reading_kinds=("t2i",), reading_steps=0)
    DemoConfig(qa_images=0, reading_check=0)


def _run_to_sft(tmp_path, monkeypatch, cfg: DemoConfig) -> tuple[list, list]:
    """train_demo.main up to SFT with stand-ins for the corpus and the training loops: (the training configs
    it ran, the SFT start it chose)."""
    from emu3.convert.vq import save_vision_tokenizer
    from emu3.recipes import pretrain

    pipe, trained, sft_starts = tiny_pipeline(seed=1), [], []
    save_vision_tokenizer(pipe.vq, Path(cfg.out) / "vq" / "model")
    monkeypatch.setattr(train_demo, "_tokenize_world", lambda *a: None)
    monkeypatch.setattr(pretrain, "main", lambda c: trained.append(c) or pipe.save(Path(c.out) / "model"))

    def stop(base, cfg, init=None):
        sft_starts.append(init)
        raise _Stop

    monkeypatch.setattr(train_demo, "sft_config", stop)
    with pytest.raises(_Stop):
        train_demo.main(cfg)
    return trained, sft_starts


@pytest.mark.parametrize("n", [0, 4])
def test_train_demo_checks_the_pretrained_model_right_after_pretraining(tmp_path, capsys, monkeypatch, n):
    monkeypatch.setattr(train_demo, "READING_WARN", -1.0)  # passes: no reading stage
    out = tmp_path / "run"
    trained, starts = _run_to_sft(tmp_path, monkeypatch, DemoConfig(out=str(out), image_size=32, reading_check=n))
    printed = capsys.readouterr().out
    saved = out / "pretrain" / READING_FILE
    assert ("reading check" in printed) == bool(n) and saved.exists() == bool(n)
    assert [Path(c.out).name for c in trained] == ["pretrain"] and starts == [out / "pretrain" / "model"]
    if n:
        assert json.loads(saved.read_text())["n"] == n


def test_a_failed_check_runs_the_reading_stage_and_sft_starts_from_it(tmp_path, monkeypatch):
    monkeypatch.setattr(train_demo, "READING_WARN", 2.0)  # fails
    out = tmp_path / "run"
    cfg = DemoConfig(out=str(out), image_size=32, reading_check=4, reading_steps=3)
    trained, starts = _run_to_sft(tmp_path, monkeypatch, cfg)
    assert [Path(c.out).name for c in trained] == ["pretrain", "reading"] and trained[1].steps == 3
    assert starts == [out / "reading" / "model"]
    assert json.loads((out / "reading" / READING_FILE).read_text())["n"] == 4  # checked again
    # resumed: both stages are reused, and SFT still starts from the reading stage's model
    trained, starts = _run_to_sft(tmp_path, monkeypatch, cfg)
    assert trained == [] and starts == [out / "reading" / "model"]
    # stopped between the stage's training and its check: the check runs on resuming
    (out / "reading" / READING_FILE).unlink()
    trained, starts = _run_to_sft(tmp_path, monkeypatch, cfg)
    assert trained == [] and (out / "reading" / READING_FILE).exists()
