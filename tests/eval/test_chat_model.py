"""An understanding model (Emu3-Chat) exported inside a generation model's folder: it shares the
parent's vision tokenizer, and chat / demo / eval answer with it."""

import json

import pytest
import torch

from emu3.cli import main
from emu3.commands import load_pipeline
from emu3.generate.pipeline import Pipeline, chat_model_folder
from emu3.recipes.train_demo import DemoConfig, export_chat
from tests.helpers.tiny_pipeline import tiny_pipeline


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(generation model folder holding chat/, the understanding model's source folder)."""
    tmp = tmp_path_factory.mktemp("chat")
    gen = tiny_pipeline(seed=0).with_config(max_answer_tokens=4, video_frames=1).save(tmp / "model")
    src = tiny_pipeline(seed=1).with_config(max_answer_tokens=4).save(tmp / "chat-src")
    export_chat(src, gen, DemoConfig(image_size=32))
    return gen, src


def _same_weights(a, b) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x.float(), y.float()) for x, y in pairs)


def test_the_chat_folder_holds_a_decoder_and_borrows_the_parent_vision_tokenizer(folders):
    gen, src = folders
    chat = chat_model_folder(gen)
    assert chat == gen / "chat" and chat_model_folder(src) is None
    config = json.loads((chat / "config.json").read_text())
    assert "vq_config" not in config  # a plain causal LM: no second copy of the tokenizer
    pipe, parent = Pipeline.load(chat, dtype=torch.float32), Pipeline.load(gen, dtype=torch.float32)
    assert _same_weights(pipe.vq, parent.vq)
    assert _same_weights(pipe.decoder, Pipeline.load(src, dtype=torch.bfloat16).decoder)  # stored in bf16
    assert pipe.cfg.vq_folder == ".." and pipe.cfg.image_size == (32, 32)


def test_understanding_commands_load_the_chat_model_and_generation_ones_do_not(folders):
    gen, _ = folders
    answering = load_pipeline(str(gen), None, "cpu", "fp32", understanding=True)
    drawing = load_pipeline(str(gen), None, "cpu", "fp32")
    chat = Pipeline.load(gen / "chat", dtype=torch.float32)
    assert _same_weights(answering.decoder, chat.decoder) and not _same_weights(drawing.decoder, chat.decoder)


def test_eval_adds_the_chat_model_on_the_understanding_tasks(folders, tmp_path):
    gen, _ = folders
    argv = ["eval", "--tasks", "text_to_image,vqa", "--n", "2", "--model", f"g={gen}", "-o", str(tmp_path),
            "--dtype", "fp32"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert list(summary["results"]) == ["g", "g-chat"]
    assert set(summary["results"]["g"]) == {"text_to_image", "vqa"} and set(summary["results"]["g-chat"]) == {"vqa"}
    assert any(c["what"] == "g-chat - g" and c["task"] == "vqa" for c in summary["comparisons"])


def test_eval_refuses_two_models_with_one_name(folders, tmp_path):
    gen, src = folders
    with pytest.raises(SystemExit, match="twice"):
        main(["eval", "--tasks", "vqa", "--n", "1", "--model", str(gen), "--model", f"model={src}",
              "-o", str(tmp_path)])  # fmt: skip


def test_demo_answers_with_the_chat_model(folders, tmp_path, monkeypatch):
    from emu3 import demo

    gen, _ = folders
    monkeypatch.setattr(demo, "DEMO_SIZES", {"text_to_image": 1, "vqa": 1})
    assert main(["demo", "--model", str(gen), "-o", str(tmp_path), "--dtype", "fp32"]) == 0
    assert "understanding model, chat/" in (tmp_path / "report.html").read_text()


def test_a_question_first_chat_model_is_asked_that_way(folders, tmp_path):
    from emu3.generate.pipeline import PipelineConfig

    _, src = folders
    chat = export_chat(src, tmp_path, DemoConfig(image_size=32, chat_steps=5))  # chat_question_first by default
    cfg = PipelineConfig.read(chat)
    assert (cfg.question_first, cfg.question_twice, cfg.vq_folder) == (True, True, "..")
