"""A deterministic checker that parses shapes-world images back into objects and scores them.

For each cell of the 3x3 layout it finds the pixels that are far from the background colour; if
there are enough, it takes their median colour, keeps the pixels nearer that colour than the
background (the half-way contour, where a blurred edge crosses the true one), and names their shape
and size by the best intersection-over-union with the six masks the world itself would draw there
(circle / square / triangle, small / large), and their colour as the nearest palette colour of that
median. A blob that matches no mask well enough (IoU below `min_iou`) is not an object. Matching
whole masks, rather than thresholding one statistic such as how much of the bounding box is filled,
keeps the verdict stable when edges are soft, as they are in images decoded from a few VQ codes.
`score_image` compares the detection with the scene a prompt asked for, the way GenEval scores
object, colour, count and position.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from emu3.worlds.shapes import BACKGROUND, COLOURS, SHAPES, SIZES, Scene, Shape, draw_shape, object_box

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)  # (C, 3)
_NAMES = list(COLOURS)


@dataclass(frozen=True)
class Detection:
    objects: tuple[Shape, ...]

    def as_scene(self) -> Scene:
        return Scene(self.objects)


def detect(image: np.ndarray, *, min_fraction: float = 0.04, min_iou: float = 0.5) -> Detection:
    """Objects found in a square (H, W, 3) uint8 image of the shapes world."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    h, w, _ = image.shape
    if h != w:
        raise ValueError(f"expected a square image, got {h}x{w}")
    pixels = image.astype(np.float32)
    to_background = np.linalg.norm(pixels - np.array(BACKGROUND, np.float32), axis=-1)  # (H, W)
    foreground = to_background > 60
    found = []
    for row in range(3):
        for col in range(3):
            y0, y1 = round(row * h / 3), round((row + 1) * h / 3)
            x0, x1 = round(col * w / 3), round((col + 1) * w / 3)
            mask = foreground[y0:y1, x0:x1]
            if mask.mean() < min_fraction:
                continue
            median = np.median(pixels[y0:y1, x0:x1][mask], axis=0)
            # The half-way contour: a blurred edge crosses the true one there, while a fixed distance
            # from the background would fatten bright shapes and thin dark ones.
            mask = np.linalg.norm(pixels[y0:y1, x0:x1] - median, axis=-1) < to_background[y0:y1, x0:x1]
            iou, shape, size = max(
                (_iou(mask, template[y0:y1, x0:x1]), shape, size)
                for (shape, size), template in _templates(h, (row, col)).items()
            )
            if iou < min_iou:
                continue
            colour = _NAMES[int(np.argmin(np.linalg.norm(_PALETTE - median, axis=1)))]
            found.append(Shape(shape, colour, size, (row, col)))
    return Detection(tuple(found))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


@lru_cache(maxsize=64)
def _templates(image_size: int, cell: tuple[int, int]) -> dict[tuple[str, str], np.ndarray]:
    """The (H, W) bool mask of every shape and size the world draws in `cell` (drawn as `render` does)."""
    out = {}
    for shape in SHAPES:
        for size in SIZES:
            canvas = Image.new("L", (image_size, image_size), 0)
            draw_shape(ImageDraw.Draw(canvas), shape, *object_box(Shape(shape, "red", size, cell), image_size), 255)
            out[(shape, size)] = np.asarray(canvas) > 127
    return out


def score_image(image: np.ndarray, scene: Scene) -> dict[str, float]:
    """GenEval-style scores in [0, 1] for one generated image against the scene it was asked for:
    object (right shape somewhere), colour (right shape and colour), position (all attributes in
    the right cell), count (same number of objects), overall (the whole scene exactly)."""
    found = detect(image).objects
    n = len(scene.objects)
    shapes = [o.shape for o in found]
    coloured = [(o.shape, o.colour) for o in found]
    placed = {(o.shape, o.colour, o.cell) for o in found}
    obj = sum(o.shape in shapes for o in scene.objects) / n
    col = sum((o.shape, o.colour) in coloured for o in scene.objects) / n
    pos = sum((o.shape, o.colour, o.cell) in placed for o in scene.objects) / n
    exact = set(found) == set(scene.objects)
    return {"object": obj, "colour": col, "position": pos, "count": float(len(found) == n), "overall": float(exact)}
