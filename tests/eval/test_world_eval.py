"""The demo-world evaluation runs every task end to end and writes a self-contained report."""

import json
import random

import numpy as np
import pytest

from emu3.cli import main
from emu3.eval import world
from emu3.eval.report import write_report
from tests.helpers.tiny_pipeline import tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0).with_config(max_answer_tokens=6, video_frames=1)


TASKS = [
    "text_to_image",
    "text_to_image_no_cfg",
    "compositional",
    "vqa",
    "captioning",
    "video",
    "video_extension",
    "vq_round_trip",
]


@pytest.mark.parametrize("task", TASKS)
def test_each_task_returns_scores_in_range(pipe, task):
    kwargs = {"new_frames": 1, "given": 4} if task == "video_extension" else {}
    result = world.TASKS[task](pipe, n=2, seed=0, **kwargs)
    numbers = {k: v for k, v in result.items() if isinstance(v, float)}
    assert numbers and all(np.isfinite(v) for v in numbers.values())
    for key in ("object", "colour", "position", "count", "overall", "accuracy", "exact", "object_f1", "found"):
        if key in numbers:
            assert 0.0 <= numbers[key] <= 1.0
    assert result["examples"]
    assert len(result["items"]) == 2


def test_read_drawings_asks_only_about_drawings_in_which_the_checker_finds_something(pipe):
    from emu3.worlds import shapes

    class Blank:  # draws nothing at all
        def text_to_image(self, prompts, seed=None):
            return [shapes.render(shapes.Scene(()), 32) for _ in prompts]

    class OneCircle(Blank):  # draws the same red circle for every prompt
        def text_to_image(self, prompts, seed=None):
            return [shapes.render(shapes.Scene((shapes.Shape("circle", "red", "large", (1, 1)),)), 72) for _ in prompts]

    empty = world.read_drawings(Blank(), n=3, reader=pipe)
    assert (empty["accuracy"], empty["items"], empty["drawings_with_objects"]) == (0.0, [], 0)
    drawn = world.read_drawings(OneCircle(), n=8, reader=pipe)
    assert drawn["drawings_with_objects"] == len(drawn["items"]) == 8
    # The questions are about what was drawn (a red circle), whatever the prompts asked for.
    expected = {"how many": "one", "what colour": "red", "what shape": "circle"}
    checked = [(truth, expected[" ".join(q.split()[:2])]) for _, q, _, truth in drawn["examples"]
               if " ".join(q.split()[:2]) in expected]  # fmt: skip
    assert checked and all(truth == want for truth, want in checked)


def test_eval_asks_a_folders_understanding_model_about_its_drawings(tmp_path):
    """`emu3 eval` on a folder holding chat/ scores read_drawings with chat/ as the reader, not the
    generation model itself (which, like the shipped one, may no longer answer)."""
    from emu3.demo import eval_models, eval_readers
    from emu3.eval import suite
    from emu3.worlds import shapes

    (tmp_path / "gen" / "chat").mkdir(parents=True)
    (tmp_path / "gen" / "chat" / "config.json").write_text("{}")
    models, only = eval_models([f"g={tmp_path / 'gen'}"])
    assert eval_readers(models, only) == {"g": str(tmp_path / "gen" / "chat")}

    class Drawer:  # draws one red circle, answers nothing
        def text_to_image(self, prompts, seed=None):
            return [shapes.render(shapes.Scene((circle,)), 72) for _ in prompts]

        def ask_batch(self, images, questions):
            return ["" for _ in questions]

    circle = shapes.Shape("circle", "red", "large", (1, 1))
    truth = {"how many objects are there?": "one", "what colour is the circle?": "red",
             "what shape is the red object?": "circle", "is there a red circle?": "yes",
             "where is the red circle?": shapes.position_phrase(circle.cell)}  # fmt: skip

    class Reader(Drawer):  # answers right about the one red circle (and "no" to "is there" any other object)
        def ask_batch(self, images, questions):
            return [truth.get(q, "no") for q in questions]

    loaded = {str(tmp_path / "gen"): Drawer(), str(tmp_path / "gen" / "chat"): Reader()}
    summary = suite.evaluate(loaded.__getitem__, models, {"read_drawings": 4}, only=only, log=lambda _: None,
                             readers=eval_readers(models, only))  # fmt: skip
    assert summary["results"]["g"]["read_drawings"]["accuracy"] == 1.0
    alone = suite.evaluate(loaded.__getitem__, models, {"read_drawings": 4}, only=only, log=lambda _: None)
    assert alone["results"]["g"]["read_drawings"]["accuracy"] == 0.0


def test_batched_understanding_equals_one_at_a_time(pipe):
    from emu3.worlds import shapes

    rng = __import__("random").Random(3)
    images = [shapes.render(shapes.sample_scene(rng), 32) for _ in range(3)]
    questions = ["how many objects are there?", "what colour is the circle?", "where is it?"]
    assert pipe.ask_batch(images, questions) == [pipe.ask(i, q) for i, q in zip(images, questions, strict=True)]
    assert pipe.caption_batch(images) == [pipe.caption(i) for i in images]
    with pytest.raises(ValueError, match="2 images but 1 questions"):
        pipe.ask_batch(images[:2], questions[:1])


def test_question_first_models_are_asked_the_question_before_the_image(pipe):
    from emu3.tokens import templates
    from emu3.tokens.format import Image
    from emu3.worlds import shapes

    image = shapes.render(shapes.sample_scene(__import__("random").Random(5)), 32)
    question = "what colour is the circle?"
    first = pipe.with_config(question_first=True)
    codes = Image(first.encode_images([image])[0])
    asked = []
    first._answers = lambda prompts, *a, **k: asked.extend(prompts) or [""] * len(prompts)
    first.ask_batch([image], [question])
    first.ask(image, question)  # through chat(), which orders each user turn the same way
    want = templates.chat_prompt([templates.Message("user", (question, codes))], first.tok, system=first.cfg.system)
    assert asked == [want, want]
    usual = templates.chat_prompt([templates.Message("user", (codes, question))], pipe.tok, system=pipe.cfg.system)
    assert want != usual and pipe.cfg.question_first is False  # BAAI's layout stays the default
    twice, asked = first.with_config(question_twice=True), []
    twice._answers = lambda prompts, *a, **k: asked.extend(prompts) or [""] * len(prompts)
    twice.ask_batch([image], [question])
    sandwich = [templates.Message("user", (question, codes, question))]
    assert asked == [templates.chat_prompt(sandwich, first.tok, system=first.cfg.system)]


def test_digits_task_uses_the_real_judge(pipe):
    pytest.importorskip("sklearn")
    pipe = pipe.with_config(guidance=world.DIGIT_SAMPLING["guidance"] + 1.0, temperature=0.9)  # not the digits' own
    result = world.digits(pipe, n=2, seed=0)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["judge_test_accuracy"] > 0.97
    # digits are sampled with their own settings unless told otherwise ({}: the model's own)
    assert result["sampling"]["guidance"] == world.DIGIT_SAMPLING["guidance"] != pipe.cfg.guidance
    assert result["sampling"]["temperature"] == world.DIGIT_SAMPLING["temperature"]
    own = world.digits(pipe, n=2, seed=0, sampling={})
    assert own["sampling"] == {"guidance": pipe.cfg.guidance, "temperature": pipe.cfg.temperature,
                               "top_k": pipe.cfg.top_k}  # fmt: skip
    recognition = world.digit_recognition(pipe, n=3)
    assert len(recognition["items"]) == 3 and 0.0 <= recognition["accuracy"] <= 1.0


def test_command_line_sampling_overrides_the_digits_own_settings():
    from emu3.demo import task_kwargs

    assert task_kwargs({})["digits"]["sampling"] == world.DIGIT_SAMPLING
    assert task_kwargs({"guidance": 2.0})["digits"]["sampling"] == {"temperature": world.DIGIT_SAMPLING["temperature"]}
    assert task_kwargs({"guidance": 2.0, "temperature": 0.5, "top_k": 4})["digits"]["sampling"] == {}


def test_eval_command_compares_models_on_paired_prompts(pipe, tmp_path):
    folder = str(pipe.save(tmp_path / "model"))
    argv = ["eval", "--suite", "world", "--n", "2", "--model", f"a={folder}", "--model", f"b={folder}",
            "-o", str(tmp_path / "out"), "--dtype", "fp32"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert list(summary["results"]) == ["a", "b"]
    assert set(summary["results"]["a"]) == set(world.SUITES["world"])
    whats = {(c["what"], c["task"]) for c in summary["comparisons"]}
    assert ("a: CFG - no CFG", "text_to_image") in whats and ("b - a", "compositional") in whats
    same = next(c for c in summary["comparisons"] if c["what"] == "b - a" and c["task"] == "text_to_image")
    assert same["difference"] == 0.0 and same["significant"] == 0.0  # same model, same prompts and seeds
    table = (tmp_path / "out" / "eval.md").read_text()
    assert "| compositional | overall (higher is better) |" in table and "b - a" in table


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


def test_an_untrained_vq_round_trip_scores_nothing(pipe):
    result = world.vq_round_trip(pipe, n=8)
    assert result["overall"] == 0.0 and result["colour"] == 0.0  # noise out of a random VQ is never a scene


def test_text_to_image_scores_are_also_split_by_object_count():
    from emu3.worlds.shapes import Scene, Shape

    one = Scene((Shape("circle", "red", "small", (0, 0)),))
    two = Scene((Shape("circle", "red", "small", (0, 0)), Shape("square", "blue", "large", (2, 2))))
    scores = [{"overall": 1.0}, {"overall": 0.0}, {"overall": 1.0}]
    assert world._by_objects([one, two, two], scores) == {"1": 1.0, "2": 0.5}


def test_eval_command_runs_chosen_tasks_with_sampling_overrides(pipe, tmp_path):
    folder = str(pipe.save(tmp_path / "model"))
    argv = ["eval", "--tasks", "text_to_image,text_to_image_no_cfg", "--n", "3", "--model", folder, "--guidance",
            "1.0", "--temperature", "0.5", "--top-k", "4", "-o", str(tmp_path / "out"), "--dtype", "fp32"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert summary["sampling"] == {"guidance": 1.0, "temperature": 0.5, "top_k": 4}
    (name,) = summary["results"]
    assert set(summary["results"][name]) == {"text_to_image", "text_to_image_no_cfg"}
    # guidance 1 everywhere: the "with CFG" task now samples exactly like the no-CFG one
    r = summary["results"][name]
    assert r["text_to_image"]["items"] == r["text_to_image_no_cfg"]["items"]
    assert "temperature 0.5" in (tmp_path / "out" / "eval.md").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--tasks", "text_to_image,nope"], "unknown task"), (["--guidance", "0.5"], "--guidance"),
     (["--temperature", "0"], "--temperature"), (["--top-k", "0"], "--top-k")],
)  # fmt: skip
def test_eval_command_rejects_bad_tasks_and_sampling(pipe, tmp_path, flags, message):
    folder = str(pipe.save(tmp_path / "model"))
    with pytest.raises(SystemExit, match=message):
        main(["eval", "--model", folder, "--n", "1", "-o", str(tmp_path / "out"), *flags])


def test_video_extension_reports_its_tokenizer_floor_and_the_floor_is_the_round_trip(pipe):
    """The floor is the score of the true clip encoded and decoded, on the predicted frames: what a
    decoder that predicted exactly the true codes would score. Recomputed here for the same motions."""
    from emu3.worlds import motion

    result = world.video_extension(pipe, n=2, seed=0, given=4, new_frames=1)
    assert {"tokenizer_floor_px", "tokenizer_found", "frozen_baseline_px"} <= result.keys()
    assert 0.0 <= result["tokenizer_found"] <= 1.0 and result["tokenizer_floor_px"] >= 0.0
    # Recompute the floor of the first clip by hand.
    rng = random.Random(world.EVAL_SEED_OFFSET + 40_000)
    side = world._side(pipe)
    m = motion.sample_motion(rng, side)
    truth = motion.render_video(m, 4 + pipe.vq.cfg.temporal_downsample_factor)
    codes = pipe.encode_video(truth)
    back = pipe.decode_video(codes)
    first = motion.score_video(back[4:], m, first_frame=4)["error_px"]
    m2 = motion.sample_motion(rng, side)
    truth2 = motion.render_video(m2, 4 + pipe.vq.cfg.temporal_downsample_factor)
    second = motion.score_video(pipe.decode_video(pipe.encode_video(truth2))[4:], m2, first_frame=4)["error_px"]
    assert result["tokenizer_floor_px"] == pytest.approx((first + second) / 2)
