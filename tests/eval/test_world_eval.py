"""The demo-world evaluation runs every task end to end and writes a self-contained report."""

import json

import numpy as np
import pytest

from emu3.cli import main
from emu3.eval import world
from emu3.eval.report import write_report
from tests.helpers.tiny_pipeline import tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0).with_config(max_answer_tokens=6, video_frames=1)


@pytest.mark.parametrize("task", ["text_to_image", "vqa", "captioning", "video", "video_extension"])
def test_each_task_returns_scores_in_range(pipe, task):
    kwargs = {"new_frames": 1, "given": 4} if task == "video_extension" else {}
    result = world.TASKS[task](pipe, n=2, seed=0, **kwargs)
    numbers = {k: v for k, v in result.items() if isinstance(v, float)}
    assert numbers and all(np.isfinite(v) for v in numbers.values())
    for key in ("object", "colour", "position", "count", "overall", "accuracy", "exact", "object_f1", "found"):
        if key in numbers:
            assert 0.0 <= numbers[key] <= 1.0
    assert result["examples"]


def test_digits_task_uses_the_real_judge(pipe):
    pytest.importorskip("sklearn")
    result = world.digits(pipe, n=2, seed=0)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["judge_test_accuracy"] > 0.85


def test_report_is_self_contained(pipe, tmp_path):
    results = {"text_to_image": world.text_to_image(pipe, n=2), "vqa": world.vqa(pipe, n=2)}
    path = write_report(results, tmp_path / "r.html", title="t")
    html = path.read_text()
    assert html.count("data:image/png;base64,") >= 4 and "http" not in html
    assert set(json.loads(path.with_suffix(".json").read_text())) == {"text_to_image", "vqa"}


def test_demo_command_writes_a_report(pipe, tmp_path):
    folder = pipe.save(tmp_path / "model")
    assert main(["demo", "--model", str(folder), "-o", str(tmp_path / "out"), "--dtype", "fp32"]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
