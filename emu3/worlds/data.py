"""Training corpora drawn from the worlds, as plain records (pixels + text), seeded and reproducible.

    shapes_captions(n, seed)   {"image", "caption", "scene"}     text->image and image->text
    shapes_qa(n, seed)         {"image", "qa": [(q, a), ...]}    visual question answering (SFT)
    motion_videos(n, seed)     {"video", "caption", "motion"}    text->video and video extension
    digit_captions(split)      {"image", "caption", "label"}     a real dataset (scikit-learn digits)
    digit_readings(copies)     the same, randomly moved, as image->text only ("tag": "aug")
    digit_drawings()           the same, as they are, as text->image only ("tag": "digit")
    where_questions(n, seed)   {"image", "qa", "tag": "where"}   "where is the X?" about scenes of 2-3 objects

Training draws seeds below `EVAL_SEED_OFFSET`; evaluation (emu3.eval.world) draws above it, so the
evaluation scenes are new to the model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from emu3.worlds import motion, shapes

EVAL_SEED_OFFSET = 1_000_000


def _rng(seed: int, stream: int) -> random.Random:
    if not 0 <= seed < EVAL_SEED_OFFSET // 100:
        raise ValueError(f"training seeds must be in [0, {EVAL_SEED_OFFSET // 100}); got {seed}")
    return random.Random(seed * 100 + stream)


def shapes_captions(n: int, seed: int = 0, image_size: int = 64) -> Iterator[dict]:
    rng = _rng(seed, 1)
    for _ in range(n):
        scene = shapes.sample_scene(rng)
        yield {"image": shapes.render(scene, image_size), "caption": shapes.caption(scene, rng), "scene": scene}


def shapes_qa(n: int, seed: int = 0, image_size: int = 64, per_image: int = 2) -> Iterator[dict]:
    rng = _rng(seed, 2)
    for _ in range(n):
        scene = shapes.sample_scene(rng)
        yield {"image": shapes.render(scene, image_size), "qa": shapes.questions(scene, rng, n=per_image),
               "scene": scene}  # fmt: skip


def motion_videos(n: int, seed: int = 0, frames: int = 16, image_size: int = 64) -> Iterator[dict]:
    rng = _rng(seed, 3)
    for _ in range(n):
        m = motion.sample_motion(rng, image_size)
        yield {"video": motion.render_video(m, frames), "caption": m.caption(), "motion": m}


def digit_captions(split: str = "train", image_size: int = 64) -> Iterator[dict]:
    from emu3.worlds import digits

    images, labels = digits.load_split(split, image_size)
    for image, label in zip(images, labels, strict=True):
        yield {"image": image, "caption": digits.caption(int(label)), "label": int(label)}


def digit_readings(copies: int, seed: int = 0, image_size: int = 64) -> Iterator[dict]:
    """`copies` randomly moved versions of each real training digit, to be read (image -> caption only:
    generating moved digits is not the goal), tagged "aug" so a training stage can take or leave them."""
    import numpy as np

    from emu3.worlds import digits

    images, labels = digits.load_split("train", image_size)
    rng = np.random.default_rng(seed * 100 + 4)
    for _ in range(copies):
        for image, label in zip(images, labels, strict=True):
            yield {"image": digits.augment(image, rng), "caption": digits.caption(int(label)), "label": int(label),
                   "generation": 0.0, "understanding": 1.0, "tag": "aug"}  # fmt: skip


def digit_drawings(image_size: int = 64) -> Iterator[dict]:
    """Each real training digit once more, to be drawn (text -> image only), tagged "digit" so that a
    generation fine-tune can draw them more often than the shapes scenes (kind "t2i:digit")."""
    for record in digit_captions("train", image_size):
        yield {**record, "generation": 1.0, "understanding": 0.0, "tag": "digit"}


def where_questions(n: int, seed: int = 0, image_size: int = 64) -> Iterator[dict]:
    """Scenes of 2-3 objects with a "where is the X?" question about each object that has a single answer,
    tagged "where": in such scenes the answer depends on which object is asked about."""
    rng = _rng(seed, 5)
    for _ in range(n):
        scene = shapes.sample_scene(rng, n_objects=rng.choice([2, 3]))
        yield {"image": shapes.render(scene, image_size), "qa": shapes.where_questions(scene), "scene": scene,
               "tag": "where"}  # fmt: skip
