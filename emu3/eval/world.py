"""The demo-world evaluation suite: every Emu3 task, scored by the worlds' own checkers.

Each task is a function `(pipe, n, seed) -> dict` of numbers (and a few examples for the report):

    text_to_image   shapes prompts -> images, GenEval-style object / colour / position / count / overall
                    (also without guidance, and on colour-shape pairs never seen in training)
    digits          "the digit 7" -> image, accuracy of a classifier trained on real digits (sampled with
                    `DIGIT_SAMPLING`, digits' own guidance and temperature)
    digit_recognition  real held-out digit images -> caption, accuracy
    vqa             question about a shapes image -> exact-match accuracy, per question type
    vqa_round_trip  the same questions about the images after the model's VQ encoded and decoded them
                    (how its own generated images look), and vqa_jpeg after JPEG at quality 85
    read_drawings   the model draws held-out prompts and a reader (by default itself) answers a question
                    about what the checker finds in each drawing
    colour_binding  "what colour is the <shape>?" about two objects of other shapes and colours: whether
                    the model knows which colour goes with which shape (0.5: it guesses between them)
    captioning      shapes image -> caption, exact scene match and per-object attribute F1
    video           motion prompt -> video, tracked position error against the true physics
    video_extension first frames of a real clip -> continuation, error against the true physics
    vq_round_trip   real scenes encoded and decoded by the model's VQ alone, scored like text_to_image:
                    the ceiling that no decoder on these codes can pass

Evaluation prompts use seeds disjoint from the training data's (see `emu3.worlds.data`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from emu3.generate.pipeline import Pipeline
from emu3.worlds import checker, motion, shapes
from emu3.worlds.data import EVAL_SEED_OFFSET  # training data uses seeds below this
from emu3.worlds.digits import DRAW_SAMPLING


def text_to_image(pipe: Pipeline, n: int = 32, seed: int = 0, guidance: float | None = None,
                  split: str = "seen") -> dict:  # fmt: skip
    """GenEval-style scores of images for held-out prompts. `split="held_out"` draws scenes that use a
    colour-shape pair never shown in training (compositional generalisation)."""
    rng = random.Random(EVAL_SEED_OFFSET + (0 if split == "seen" else 50_000) + seed)
    scenes = [shapes.sample_scene(rng, split=split) for _ in range(n)]
    prompts = [shapes.caption(s, rng) for s in scenes]
    images = _batched(lambda ps, i: pipe.text_to_image(ps, guidance=guidance, seed=seed + i), prompts)
    scores = [checker.score_image(img, s) for img, s in zip(images, scenes, strict=True)]
    out = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
    out["by_objects"] = _by_objects(scenes, scores)
    out["items"] = [s["overall"] for s in scores]
    out["examples"] = list(zip(prompts[:8], images[:8], strict=True))
    return out


def _by_objects(scenes: list[shapes.Scene], scores: list[dict]) -> dict[str, float]:
    """Overall score by the number of objects the prompt asks for ("1", "2", "3")."""
    groups: dict[str, list[float]] = defaultdict(list)
    for scene, score in zip(scenes, scores, strict=True):
        groups[str(len(scene.objects))].append(score["overall"])
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}


def vq_round_trip(pipe: Pipeline, n: int = 200, seed: int = 0) -> dict:
    """GenEval-style scores of held-out scenes passed through the vision tokenizer only (no decoder)."""
    return scenes_round_trip(lambda images: round_trip(pipe, images), _side(pipe), n, seed)


def scenes_round_trip(round_trip: Callable[[list[np.ndarray]], list[np.ndarray]], size: int, n: int = 200,
                      seed: int = 0) -> dict:  # fmt: skip
    """`vq_round_trip`'s scenes at `size` px through any `round_trip` (images encoded and decoded), e.g. a
    bare tokenizer's."""
    rng = random.Random(EVAL_SEED_OFFSET + 60_000 + seed)
    scenes = [shapes.sample_scene(rng) for _ in range(n)]
    images = [shapes.render(s, size) for s in scenes]
    decoded = round_trip(images)
    scores = [checker.score_image(img, s) for img, s in zip(decoded, scenes, strict=True)]
    out = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
    out["items"] = [s["overall"] for s in scores]
    out["examples"] = [(f"round trip of: {shapes.caption(s, rng)}", img) for s, img in zip(scenes[:4], decoded[:4],
                                                                                      strict=True)]  # fmt: skip
    return out


def text_to_image_no_cfg(pipe: Pipeline, n: int = 32, seed: int = 0) -> dict:
    """The same prompts and seeds as `text_to_image`, sampled without guidance (scale 1)."""
    return text_to_image(pipe, n, seed, guidance=1.0)


def compositional(pipe: Pipeline, n: int = 32, seed: int = 0) -> dict:
    return text_to_image(pipe, n, seed, split="held_out")


# Generated digits are sampled with their own guidance and temperature (`digits.DRAW_SAMPLING`: why).
DIGIT_SAMPLING: dict[str, float] = DRAW_SAMPLING


def digits(pipe: Pipeline, n: int = 30, seed: int = 0, sampling: dict | None = None, judge=None) -> dict:
    """'the digit 7' -> image, judged by a classifier trained on the real training split. `sampling`:
    changes to the model's sampling defaults (default `DIGIT_SAMPLING`; {} for the model's defaults, not
    the sampling it may keep for digit prompts)."""
    from emu3.worlds import digits as digit_world

    sampling = DIGIT_SAMPLING if sampling is None else sampling
    # Exactly this sampling over the model's defaults, not its own for digit prompts (`prompt_sampling`).
    pipe = pipe.with_config(**sampling, prompt_sampling=())
    judge = judge or digit_world.DigitJudge.train()
    labels = [(seed + i) % 10 for i in range(n)]
    images = _batched(lambda ps, i: pipe.text_to_image(ps, seed=seed + i), [digit_world.caption(d) for d in labels])
    correct = judge.predict(np.stack(images)) == np.array(labels)
    return {
        "accuracy": float(correct.mean()),
        "judge_test_accuracy": judge.test_accuracy,
        "sampling": {"guidance": pipe.cfg.guidance, "temperature": pipe.cfg.temperature, "top_k": pipe.cfg.top_k},
        "items": correct.astype(float).tolist(),
        "examples": [(digit_world.caption(d), img) for d, img in zip(labels[:10], images[:10], strict=True)],
    }


def digit_recognition(pipe: Pipeline, n: int = 0, seed: int = 0) -> dict:
    """Captions of real handwritten digits from the held-out test split ("the digit 7"); n=0: all."""
    from emu3.worlds import digits as digit_world

    images, labels = digit_world.load_split("test", _side(pipe))
    if n:
        images, labels = images[:n], labels[:n]
    said = _batched(lambda xs, i: pipe.caption_batch(xs), list(images), size=32)
    correct = [digit_world.parse_caption(t) == int(y) for t, y in zip(said, labels, strict=True)]
    return {"accuracy": float(np.mean(correct)), "items": [float(c) for c in correct],
            "examples": [(img, t) for img, t in zip(images[:8], said[:8], strict=True)]}  # fmt: skip


def vqa(pipe: Pipeline, n: int = 60, seed: int = 0, view: Callable | None = None) -> dict:
    """Questions about held-out scenes, exact-match accuracy by question type. `view(pipe, images)`
    changes the images before they are asked about (e.g. `round_trip`); the questions stay the same."""
    rng = random.Random(EVAL_SEED_OFFSET + 10_000 + seed)
    cases = []
    while len(cases) < n:
        scene = shapes.sample_scene(rng)
        image = shapes.render(scene, _side(pipe))
        cases += [(image, q, a) for q, a in shapes.questions(scene, rng, n=1)]
    if view is not None:
        cases = [(img, q, a) for img, (_, q, a) in zip(view(pipe, [c[0] for c in cases]), cases, strict=True)]
    said = []
    for i in range(0, n, 32):
        chunk = cases[i : i + 32]
        said += pipe.ask_batch([c[0] for c in chunk], [c[1] for c in chunk])
    by_kind: dict[str, list[bool]] = defaultdict(list)
    items = []
    for (_, question, answer), reply in zip(cases, said, strict=True):
        ok = _norm(reply) == _norm(answer)
        by_kind[" ".join(question.split()[:2])].append(ok)
        items.append(float(ok))
    examples = [(img, q, r, a) for (img, q, a), r in zip(cases[:8], said[:8], strict=True)]
    return {"accuracy": float(np.mean(items)), "by_type": {k: float(np.mean(v)) for k, v in by_kind.items()},
            "items": items, "examples": examples}  # fmt: skip


def colour_binding(pipe: Pipeline, n: int = 60, seed: int = 0) -> dict:
    """`shapes.binding_question` about n held-out two-object scenes: the share answered with the asked
    object's colour ("accuracy") and with the other object's ("other"). 0.5 and 0.5: the model reads
    both colours but does not know which shape has which (what a decoder that has not learnt to read
    its vision tokenizer does; docs/history.md, "Today's recipe, retrained from scratch")."""
    rng = random.Random(EVAL_SEED_OFFSET + 80_000 + seed)
    cases = [shapes.binding_question(rng) for _ in range(n)]
    images = [shapes.render(scene, _side(pipe)) for scene, *_ in cases]
    said = _batched(lambda xs, i: pipe.ask_batch(xs, [c[1] for c in cases[i : i + len(xs)]]), images, size=32)
    right = [float(_norm(r) == c[2]) for r, c in zip(said, cases, strict=True)]
    other = [float(_norm(r) == c[3]) for r, c in zip(said, cases, strict=True)]
    examples = [(img, c[1], r, c[2]) for img, c, r in zip(images[:8], cases[:8], said[:8], strict=True)]
    return {"accuracy": float(np.mean(right)), "other": float(np.mean(other)), "items": right, "examples": examples}


def round_trip(pipe: Pipeline, images: list[np.ndarray]) -> list[np.ndarray]:
    """Images encoded and decoded by the model's own vision tokenizer: what its generated images look like."""
    out = []
    for i in range(0, len(images), 64):
        out += pipe.decode_images(torch.stack(pipe.encode_images(images[i : i + 64])))
    return out


def jpeg(pipe: Pipeline, images: list[np.ndarray], quality: int = 85) -> list[np.ndarray]:
    """Images saved and read back as JPEG at `quality`, as a screenshot or a photo library would keep them."""
    from emu3.vision.image_io import jpeg_copy

    return [jpeg_copy(image, quality) for image in images]


def read_drawings(pipe: Pipeline, n: int = 30, seed: int = 0, reader: Pipeline | None = None) -> dict:
    """Questions about the model's own drawings: `pipe` draws an image for each held-out prompt, the
    checker parses it, and `reader` (default: the same model; the demo and the benchmark pass the
    folder's understanding model) answers one question about what the checker found. An answer is right
    when it matches the parse, so a drawing that misses its prompt still counts; drawings in which the
    checker finds nothing (or more objects than a question can count) are left out."""
    reader = reader or pipe
    rng = random.Random(EVAL_SEED_OFFSET + 70_000 + seed)
    scenes = [shapes.sample_scene(rng) for _ in range(n)]
    prompts = [shapes.caption(s, rng) for s in scenes]
    images = _batched(lambda ps, i: pipe.text_to_image(ps, seed=seed + i), prompts)
    cases = []
    for image in images:
        found = checker.detect(image)
        if 0 < len(found.objects) < len(shapes.NUMBERS):  # a count the questions can say
            cases += [(image, q, a) for q, a in shapes.questions(shapes.Scene(found.objects), rng, n=1)]
    said = _batched(lambda xs, i: reader.ask_batch([c[0] for c in xs], [c[1] for c in xs]), cases)
    items = [float(_norm(r) == _norm(c[2])) for r, c in zip(said, cases, strict=True)]
    return {"accuracy": float(np.mean(items)) if items else 0.0, "drawings_with_objects": len(cases), "items": items,
            "examples": [(img, q, r, a) for (img, q, a), r in zip(cases[:8], said[:8], strict=True)]}  # fmt: skip


def vqa_round_trip(pipe: Pipeline, n: int = 60, seed: int = 0) -> dict:
    """`vqa` on the same scenes passed through the model's VQ first (the model's own drawings of them)."""
    return vqa(pipe, n, seed, view=round_trip)


def vqa_jpeg(pipe: Pipeline, n: int = 60, seed: int = 0) -> dict:
    """`vqa` on the same scenes saved as JPEG (quality 85) first."""
    return vqa(pipe, n, seed, view=jpeg)


def captioning(pipe: Pipeline, n: int = 30, seed: int = 0) -> dict:
    rng = random.Random(EVAL_SEED_OFFSET + 20_000 + seed)
    scenes = [shapes.sample_scene(rng) for _ in range(n)]
    images = [shapes.render(scene, _side(pipe)) for scene in scenes]
    said = _batched(lambda xs, i: pipe.caption_batch(xs), images, size=32)
    parsed = [shapes.parse_caption(t) for t in said]
    exact = [float(p == s) for p, s in zip(parsed, scenes, strict=True)]
    f1s = [_object_f1(p, s) for p, s in zip(parsed, scenes, strict=True)]
    return {"exact": float(np.mean(exact)), "object_f1": float(np.mean(f1s)), "items": exact,
            "examples": list(zip(images[:8], said[:8], strict=True))}  # fmt: skip


def video(pipe: Pipeline, n: int = 6, seed: int = 0, frames: int | None = None) -> dict:
    rng = random.Random(EVAL_SEED_OFFSET + 30_000 + seed)
    errors, found, examples = [], [], []
    for i in range(n):
        m = motion.sample_motion(rng, _side(pipe))
        clip = pipe.text_to_video(m.caption(), frames=frames, seed=seed + i)
        # A caption fixes direction, not start: score against the best-fitting start along the path.
        s = _best_start_score(clip, m)
        errors.append(s["error_px"])
        found.append(s["found"])
        if len(examples) < 3:
            examples.append((m.caption(), clip))
    return {"error_px": float(np.mean(errors)), "found": float(np.mean(found)), "items": errors, "examples": examples}


def tokenizer_floor(round_trip: Callable[[np.ndarray], np.ndarray], truth: np.ndarray, m: motion.Motion,
                    given: int) -> dict[str, float]:  # fmt: skip
    """The true clip `truth` of motion `m` through a vision tokenizer (`round_trip`: frames encoded and
    decoded), scored after its first `given` frames. Codes that a decoder predicted perfectly would decode
    to this, so no model extends `given` frames better than its tokenizer's round trip."""
    return motion.score_video(round_trip(truth)[given:], m, first_frame=given)


def video_extension(pipe: Pipeline, n: int = 6, seed: int = 0, given: int = 8, new_frames: int = 2) -> dict:
    rng = random.Random(EVAL_SEED_OFFSET + 40_000 + seed)
    t = pipe.vq.cfg.temporal_downsample_factor
    errors, baseline, examples = [], [], []
    floor, floor_found = [], []
    for i in range(n):
        m = motion.sample_motion(rng, _side(pipe))
        truth = motion.render_video(m, given + new_frames * t)  # the given frames, then what should follow
        clip = truth[:given]
        out = pipe.extend_video(clip, m.caption(), new_frames=new_frames, seed=seed + i)
        new = out[given:]
        errors.append(motion.score_video(new, m, first_frame=given)["error_px"])
        # Baseline: a frozen world (repeat the last given frame).
        still = np.repeat(clip[-1:], new_frames * t, axis=0)
        baseline.append(motion.score_video(still, m, first_frame=given)["error_px"])
        s = tokenizer_floor(lambda x: pipe.decode_video(pipe.encode_video(x)), truth, m, given)
        floor.append(s["error_px"])
        floor_found.append(s["found"])
        if len(examples) < 3:
            examples.append((m.caption(), out))
    side = _side(pipe)  # the target is stated at 64 px; errors scale with the image side
    return {"error_px": float(np.mean(errors)), "error_px_at_64": float(np.mean(errors)) * 64 / side,
            "frozen_baseline_px": float(np.mean(baseline)), "tokenizer_floor_px": float(np.mean(floor)),
            "tokenizer_found": float(np.mean(floor_found)), "items": errors, "examples": examples}  # fmt: skip


TASKS: dict[str, Callable[..., dict]] = {
    "text_to_image": text_to_image, "text_to_image_no_cfg": text_to_image_no_cfg, "compositional": compositional,
    "digits": digits, "digit_recognition": digit_recognition, "vqa": vqa, "captioning": captioning, "video": video,
    "video_extension": video_extension, "vq_round_trip": vq_round_trip, "vqa_round_trip": vqa_round_trip,
    "vqa_jpeg": vqa_jpeg, "read_drawings": read_drawings, "colour_binding": colour_binding,
}  # fmt: skip
# The headline number of each task (the mean of its "items"), and whether higher is better.
HEADLINE: dict[str, tuple[str, bool]] = {
    "text_to_image": ("overall", True), "text_to_image_no_cfg": ("overall", True), "compositional": ("overall", True),
    "digits": ("accuracy", True), "digit_recognition": ("accuracy", True), "vqa": ("accuracy", True),
    "captioning": ("exact", True), "video": ("error_px", False), "video_extension": ("error_px", False),
    "vq_round_trip": ("overall", True), "vqa_round_trip": ("accuracy", True), "vqa_jpeg": ("accuracy", True),
    "read_drawings": ("accuracy", True), "colour_binding": ("accuracy", True),
}  # fmt: skip
# Tasks that read images and answer in text: the ones an understanding model (Emu3-Chat) is scored on.
UNDERSTANDING: tuple[str, ...] = ("vqa", "captioning", "digit_recognition", "vqa_round_trip", "vqa_jpeg",
                                  "colour_binding")  # fmt: skip
SUITES: dict[str, tuple[str, ...]] = {
    "world": ("text_to_image", "text_to_image_no_cfg", "compositional", "vqa", "vqa_round_trip", "vqa_jpeg",
              "captioning", "video_extension", "video", "vq_round_trip"),
    "digits": ("digits", "digit_recognition"),
}  # fmt: skip


# ---------------------------------------------------------------- helpers


def _batched(fn, prompts: list, size: int = 32) -> list:
    out = []
    for i in range(0, len(prompts), size):
        out += fn(prompts[i : i + size], i)
    return out


def _side(pipe: Pipeline) -> int:
    """The pixel side of the square images the model generates (and is asked about)."""
    return pipe.latent_size()[0] * pipe.vq.cfg.spatial_factor


def _norm(text: str) -> str:
    return text.strip().lower().rstrip(".")


def _object_f1(parsed: shapes.Scene | None, truth: shapes.Scene) -> float:
    if parsed is None:
        return 0.0
    said, real = set(parsed.objects), set(truth.objects)
    hit = len(said & real)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(said), hit / len(real)
    return 2 * precision * recall / (precision + recall)


def _best_start_score(clip: np.ndarray, m: motion.Motion) -> dict[str, float]:
    """Tracked error against motions with the caption's shape, colour and velocity, from the start
    that fits the first frame best (the caption does not say where the object starts)."""
    seen = motion.track(clip[:1], m.colour)[0]
    if np.isnan(seen).any():
        return {"found": 0.0, "error_px": float(m.image_size)}
    fitted = motion.Motion(m.shape, m.colour, (float(seen[0]), float(seen[1])), m.velocity, m.half, m.image_size)
    return motion.score_video(clip, fitted)
