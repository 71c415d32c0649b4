"""A deterministic checker that parses shapes-world images back into objects and scores them.

For each cell of the 3x3 layout it finds the pixels that are far from the background colour; if
there are enough, it names their colour (nearest palette colour of the median pixel), their
shape (how much of their bounding box they fill: square ~1, circle ~pi/4, triangle ~1/2) and size
(bounding-box extent). `score_image` compares the detection with the scene a prompt asked for, the
way GenEval scores object, colour, count and position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emu3.worlds.shapes import BACKGROUND, COLOURS, Scene, Shape

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)  # (C, 3)
_NAMES = list(COLOURS)


@dataclass(frozen=True)
class Detection:
    objects: tuple[Shape, ...]

    def as_scene(self) -> Scene:
        return Scene(self.objects)


def detect(image: np.ndarray, *, min_fraction: float = 0.04) -> Detection:
    """Objects found in an (H, W, 3) uint8 image of the shapes world."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    h, w, _ = image.shape
    pixels = image.astype(np.float32)
    foreground = np.linalg.norm(pixels - np.array(BACKGROUND, np.float32), axis=-1) > 60  # (H, W)
    found = []
    for row in range(3):
        for col in range(3):
            y0, y1 = round(row * h / 3), round((row + 1) * h / 3)
            x0, x1 = round(col * w / 3), round((col + 1) * w / 3)
            mask = foreground[y0:y1, x0:x1]
            if mask.mean() < min_fraction:
                continue
            obj = _classify(pixels[y0:y1, x0:x1], mask, cell_size=min(y1 - y0, x1 - x0), cell=(row, col))
            if obj is not None:
                found.append(obj)
    return Detection(tuple(found))


def _classify(pixels: np.ndarray, mask: np.ndarray, cell_size: int, cell: tuple[int, int]) -> Shape | None:
    colour = _NAMES[int(np.argmin(np.linalg.norm(_PALETTE - np.median(pixels[mask], axis=0), axis=1)))]
    ys, xs = np.nonzero(mask)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = mask.sum() / float(height * width)
    shape = "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"
    size = "large" if max(height, width) > 0.68 * cell_size else "small"
    return Shape(shape, colour, size, cell)


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
