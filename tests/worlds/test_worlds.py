"""The demo worlds: rendering, captions, questions and the checkers that score generated output."""

import random

import numpy as np
import pytest

from emu3.worlds import checker, motion, shapes


@pytest.mark.parametrize("seed", range(10))
def test_checker_recovers_every_rendered_scene(seed):  # 1,000 scenes in all, held-out pairs included
    rng = random.Random(seed)
    for _ in range(100):
        scene = shapes.sample_scene(rng, split="any")
        assert set(checker.detect(shapes.render(scene)).objects) == set(scene.objects)


def test_checker_tolerates_soft_edges_but_not_blobs():
    """Decoded images have soft edges: a blurred render still parses; a blob of the wrong form does not."""
    from PIL import Image, ImageFilter

    rng = random.Random(11)
    scenes = [shapes.sample_scene(rng, split="any") for _ in range(100)]
    blurred = [np.asarray(Image.fromarray(shapes.render(s)).filter(ImageFilter.GaussianBlur(1.0))) for s in scenes]
    hits = [set(checker.detect(b).objects) == set(s.objects) for b, s in zip(blurred, scenes, strict=True)]
    assert np.mean(hits) >= 0.98
    image = np.zeros((64, 64, 3), np.uint8) + np.array(shapes.BACKGROUND, np.uint8)
    image[2:6, 2:20] = shapes.COLOURS["red"]  # a thin bar: enough pixels, no shape the world draws
    assert checker.detect(image).objects == ()


def test_scores_reward_the_right_scene_only():
    rng = random.Random(4)
    scene = shapes.Scene(
        (shapes.Shape("circle", "red", "small", (0, 0)), shapes.Shape("square", "blue", "large", (2, 2)))
    )
    assert checker.score_image(shapes.render(scene), scene)["overall"] == 1.0
    moved = shapes.Scene(
        (shapes.Shape("circle", "red", "small", (0, 1)), shapes.Shape("square", "blue", "large", (2, 2)))
    )
    s = checker.score_image(shapes.render(moved), scene)
    assert s["object"] == 1.0 and s["colour"] == 1.0 and s["position"] == 0.5 and s["overall"] == 0.0
    blank = np.zeros((64, 64, 3), np.uint8) + np.array(shapes.BACKGROUND, np.uint8)
    assert checker.score_image(blank, scene) == {"object": 0, "colour": 0, "position": 0, "count": 0, "overall": 0}
    assert rng  # phrasing randomness is not involved in scoring


def test_captions_parse_back_to_their_scene():
    rng = random.Random(5)
    phrasings = set()
    for _ in range(300):
        scene = shapes.sample_scene(rng)
        text = shapes.caption(scene, rng)
        phrasings.add(("there is" in text, "it" in text.split()))
        assert shapes.parse_caption(text) == scene, text
    assert len(phrasings) == 4  # absolute and relative positions, with and without "there is"
    for bad in ["", "a red circle", "a small pink circle in the top left", "a small red circle in the top left xyz"]:
        assert shapes.parse_caption(bad) is None


def test_answers_are_true_of_the_scene():
    rng = random.Random(6)
    for _ in range(100):
        scene = shapes.sample_scene(rng)
        for q, a in shapes.questions(scene, rng):
            if q.startswith("how many"):
                assert a == shapes.NUMBERS[len(scene.objects)]
            elif q.startswith("what colour is the "):
                shape = q.removeprefix("what colour is the ").rstrip("?")
                assert [o.colour for o in scene.objects if o.shape == shape] == [a]
            elif q.startswith("is there a "):
                colour, shape = q.removeprefix("is there a ").rstrip("?").split()
                present = any(o.colour == colour and o.shape == shape for o in scene.objects)
                assert a == ("yes" if present else "no")
            elif q.startswith("where is the "):
                colour, shape = q.removeprefix("where is the ").rstrip("?").split()
                cells = [o.cell for o in scene.objects if o.colour == colour and o.shape == shape]
                assert shapes.position_phrase(cells[0]) == a


def test_motion_stays_in_frame_and_is_tracked():
    rng = random.Random(7)
    for _ in range(20):
        m = motion.sample_motion(rng)
        pos = m.positions(40)
        assert (pos >= m.half - 1e-4).all() and (pos <= m.image_size - m.half + 1e-4).all()
        steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
        assert (steps <= 3.0 + 1e-3).all()  # a bounce only shortens a step
        assert np.isclose(steps, 3.0, atol=1e-3).mean() > 0.6  # constant speed between bounces
    m = motion.sample_motion(random.Random(8))
    video = motion.render_video(m, 16)
    assert video.shape == (16, 64, 64, 3)
    good, wrong = motion.score_video(video, m), motion.score_video(video[::-1].copy(), m)
    assert good["found"] == 1.0 and good["error_px"] < 1.5 and wrong["error_px"] > 5
    assert m.caption().startswith(f"a {m.colour} {m.shape} moving ")


def test_digit_judge_reads_real_digits():
    pytest.importorskip("sklearn", reason="the digits world needs scikit-learn (emu3[world])")
    from emu3.worlds import digits

    judge = digits.DigitJudge.train()
    assert judge.test_accuracy > 0.97  # the judge of generated digits must itself be near-perfect
    images, labels = digits.load_split("test")
    assert images.shape[1:] == (64, 64, 3) and images.dtype == np.uint8
    train_images, _ = digits.load_split("train")
    assert len(images) + len(train_images) == 1797  # a partition of the data set ...
    seen = {x.tobytes() for x in train_images}
    assert sum(x.tobytes() in seen for x in images) < 5  # ... with (nearly) no test image in training
    assert (judge.predict(digits.load_split("test", 72)[0]) == labels).mean() > 0.97  # any multiple of 8
    assert digits.parse_caption(digits.caption(7)) == 7 and digits.parse_caption("a cat") is None


def test_moved_digits_stay_readable_and_the_ranking_judge_is_a_different_classifier():
    pytest.importorskip("sklearn", reason="the digits world needs scikit-learn (emu3[world])")
    from emu3.worlds import digits

    images, labels = digits.load_split("test", 72)
    rng = np.random.default_rng(0)
    moved = np.stack([digits.augment(x, rng) for x in images])
    assert moved.shape == images.shape and moved.dtype == np.uint8
    changed = np.abs(moved.astype(int) - images.astype(int)).mean(axis=(1, 2, 3))
    assert (changed > 1).mean() > 0.95  # (nearly) every copy really moved ...
    judge = digits.DigitJudge.train(72)
    assert (judge.predict(moved) == labels).mean() > 0.85  # ... and still shows its digit
    ranker = digits.DigitJudge.train(72, kind="logistic")
    assert ranker.test_accuracy > 0.95 and type(ranker.model) is not type(judge.model)
    with pytest.raises(ValueError, match="svm"):
        digits.DigitJudge.train(kind="forest")


def test_held_out_pairs_never_appear_in_training_data_and_always_in_the_held_out_split():
    from emu3.worlds import data, motion

    rng = random.Random(11)
    for record in data.shapes_captions(400, seed=3):
        assert not any(shapes.is_held_out(o) for o in record["scene"].objects)
        pairs = {f"{c} {s}" for c, s in shapes.HELD_OUT_PAIRS}
        assert not any(p in record["caption"] for p in pairs), record["caption"]
    for record in data.shapes_qa(200, seed=3):
        assert not any(p in q for q, _ in record["qa"] for p in pairs)
    for _ in range(200):
        m = motion.sample_motion(rng)
        assert (m.colour, m.shape) not in shapes.HELD_OUT_PAIRS
        assert any(shapes.is_held_out(o) for o in shapes.sample_scene(rng, split="held_out").objects)
    seen_anywhere = {(o.colour, o.shape) for _ in range(500) for o in shapes.sample_scene(rng, split="any").objects}
    assert shapes.HELD_OUT_PAIRS <= seen_anywhere
    with pytest.raises(ValueError, match="split"):
        shapes.sample_scene(rng, split="train")
