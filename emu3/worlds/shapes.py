"""The shapes world: seeded scenes of 1-3 coloured shapes on a 3x3 layout, rendered, captioned and
questioned, small enough for a 2-core CPU to learn in minutes.

A `Scene` is the ground truth. Everything else is derived from it deterministically (given a
`random.Random` for the phrasing): the image (`render`), captions in several phrasings
(`caption`), question/answer pairs (`questions`). `parse_caption` inverts the captions, so a
caption the model writes can be scored against the scene, and `checker.py` parses images.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
BACKGROUND = (24, 24, 32)
ROW_WORDS = ("top", "middle", "bottom")
COL_WORDS = ("left", "middle", "right")
NUMBERS = ("zero", "one", "two", "three", "four")
# Colour-shape pairs the training data never shows or names, so that evaluation can test composition:
# every colour and every shape is still seen, only these pairings are new (split="held_out").
HELD_OUT_PAIRS = frozenset({("green", "triangle"), ("purple", "square"), ("yellow", "circle")})
SPLITS = ("seen", "held_out", "any")


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]  # (row, col) in the 3x3 layout

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.colour not in COLOURS or self.size not in SIZES:
            raise ValueError(f"unknown attribute in {self}")
        if not all(0 <= c < 3 for c in self.cell):
            raise ValueError(f"cell {self.cell} is outside the 3x3 layout")


@dataclass(frozen=True)
class Scene:
    objects: tuple[Shape, ...]

    def __post_init__(self) -> None:
        cells = [o.cell for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError("two objects share a cell")


def position_phrase(cell: tuple[int, int]) -> str:
    """'top left', 'top', 'center', 'bottom right', ..."""
    row, col = cell
    if (row, col) == (1, 1):
        return "center"
    if row == 1:
        return COL_WORDS[col]
    if col == 1:
        return ROW_WORDS[row]
    return f"{ROW_WORDS[row]} {COL_WORDS[col]}"


_PHRASE_TO_CELL = {position_phrase((r, c)): (r, c) for r in range(3) for c in range(3)}
_RELATIONS = {(1, 0): "below it", (-1, 0): "above it", (0, 1): "to the right of it", (0, -1): "to the left of it"}
_RELATION_OFFSET = {v: k for k, v in _RELATIONS.items()}


def sample_scene(rng: random.Random, n_objects: int | None = None, split: str = "seen") -> Scene:
    """A random scene. `split`: "seen" never uses a held-out colour-shape pair (training data and the
    main evaluation), "held_out" uses at least one (the compositional evaluation), "any" is unconstrained."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    while True:
        n = n_objects if n_objects is not None else rng.randint(1, 3)
        cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n)
        objects = tuple(Shape(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(SIZES), c) for c in cells)
        novel = any(is_held_out(o) for o in objects)
        if split == "any" or novel == (split == "held_out"):
            return Scene(objects)


def is_held_out(obj: Shape) -> bool:
    return (obj.colour, obj.shape) in HELD_OUT_PAIRS


# ---------------------------------------------------------------- rendering


def object_box(obj: Shape, image_size: int) -> tuple[float, float, float]:
    """(centre x, centre y, half extent) in pixels."""
    cell = image_size / 3
    half = cell * (0.42 if obj.size == "large" else 0.27)
    return (obj.cell[1] + 0.5) * cell, (obj.cell[0] + 0.5) * cell, half


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, half: float, colour) -> None:
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)


def render(scene: Scene, image_size: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 image of the scene."""
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        draw_shape(draw, obj.shape, *object_box(obj, image_size), COLOURS[obj.colour])
    return np.asarray(image, dtype=np.uint8).copy()


# ---------------------------------------------------------------- captions


def _describe(obj: Shape, rng: random.Random, with_size: bool) -> str:
    return f"a {obj.size + ' ' if with_size else ''}{obj.colour} {obj.shape}"


def caption(scene: Scene, rng: random.Random) -> str:
    """One of several phrasings; always mentions every object's colour, shape, size and place."""
    parts = []
    for i, obj in enumerate(scene.objects):
        where = f"in the {position_phrase(obj.cell)}"
        if i > 0:
            prev = scene.objects[i - 1].cell
            offset = (obj.cell[0] - prev[0], obj.cell[1] - prev[1])
            if offset in _RELATIONS and rng.random() < 0.5:
                where = _RELATIONS[offset]
        parts.append(f"{_describe(obj, rng, True)} {where}")
    text = " and ".join(parts) if len(parts) < 3 else f"{parts[0]}, {parts[1]} and {parts[2]}"
    if rng.random() < 0.3:
        text = "there is " + text
    return text


_OBJECT_RE = re.compile(
    r"an? (?P<size>small|large) (?P<colour>\w+) (?P<shape>circle|square|triangle) "
    r"(?:in the (?P<where>[a-z ]+?)|(?P<rel>below it|above it|to the right of it|to the left of it))(?=,| and |$)"
)


def parse_caption(text: str) -> Scene | None:
    """The scene a caption describes, or None if it does not follow the world's grammar."""
    text = text.strip().lower().rstrip(".").removeprefix("there is ")
    objects: list[Shape] = []
    pos = 0
    for m in _OBJECT_RE.finditer(text):
        if text[pos : m.start()].strip(" ,").removeprefix("and").strip() != "":
            return None
        pos = m.end()
        if m.group("where"):
            cell = _PHRASE_TO_CELL.get(m.group("where"))
        elif objects:
            dr, dc = _RELATION_OFFSET[m.group("rel")]
            cell = (objects[-1].cell[0] + dr, objects[-1].cell[1] + dc)
        else:
            cell = None
        if cell is None or m.group("colour") not in COLOURS:
            return None
        try:
            objects.append(Shape(m.group("shape"), m.group("colour"), m.group("size"), cell))
        except ValueError:
            return None
    if not objects or text[pos:].strip():
        return None
    try:
        return Scene(tuple(objects))
    except ValueError:
        return None


# ---------------------------------------------------------------- questions


def questions(scene: Scene, rng: random.Random, n: int = 3) -> list[tuple[str, str]]:
    """Question/answer pairs about colour, shape, count, position and existence."""
    makers = [_q_count, _q_colour, _q_shape, _q_where, exists_question]
    out: list[tuple[str, str]] = []
    for maker in rng.sample(makers, len(makers)):
        qa = maker(scene, rng)
        if qa is not None:
            out.append(qa)
        if len(out) == n:
            break
    return out


def _q_count(scene: Scene, rng: random.Random) -> tuple[str, str]:
    return "how many objects are there?", NUMBERS[len(scene.objects)]


def _q_colour(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    unique = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    return f"what colour is the {obj.shape}?", obj.colour


def _q_shape(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    unique = [o for o in scene.objects if sum(p.colour == o.colour for p in scene.objects) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    return f"what shape is the {obj.colour} object?", obj.shape


def _q_where(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    asked = where_questions(scene)
    return rng.choice(asked) if asked else None


def where_questions(scene: Scene) -> list[tuple[str, str]]:
    """The question "where is the <colour> <shape>?" about each object whose colour-shape pair is unique in
    the scene (with two red circles it has no single answer)."""
    unique = [o for o in scene.objects if sum((p.colour, p.shape) == (o.colour, o.shape) for p in scene.objects) == 1]
    return [(f"where is the {o.colour} {o.shape}?", position_phrase(o.cell)) for o in unique]


def binding_question(rng: random.Random) -> tuple[Scene, str, str, str]:
    """A scene of two objects that differ in shape and in colour, and "what colour is the <shape>?" about
    one of them (either, with equal chance): (scene, question, its colour, the other object's colour).
    A reader that sees both colours but not which shape has which answers the other colour half the time."""
    while True:
        scene = sample_scene(rng, n_objects=2)
        a, b = scene.objects
        if a.shape != b.shape and a.colour != b.colour:
            break
    asked, other = (a, b) if rng.random() < 0.5 else (b, a)
    return scene, f"what colour is the {asked.shape}?", asked.colour, other.colour


def exists_question(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """The question "is there a <colour> <shape>?": half the time about an object of the scene ("yes"),
    else about a seen colour-shape pair the scene lacks ("no")."""
    if rng.random() < 0.5:
        obj = rng.choice(scene.objects)
        return f"is there a {obj.colour} {obj.shape}?", "yes"
    present = {(o.colour, o.shape) for o in scene.objects}
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present and (c, s) not in HELD_OUT_PAIRS]
    colour, shape = rng.choice(absent)
    return f"is there a {colour} {shape}?", "no"
