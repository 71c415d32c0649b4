"""Short videos of a shape moving at constant speed and bouncing off the walls, with a caption of
the motion, and a checker that tracks the object in (generated) frames against the true physics.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from emu3.worlds.shapes import BACKGROUND, COLOURS, HELD_OUT_PAIRS, SHAPES, draw_shape

DIRECTIONS = {
    "right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1),
    "down and to the right": (1, 1), "down and to the left": (-1, 1),
    "up and to the right": (1, -1), "up and to the left": (-1, -1),
}  # fmt: skip


@dataclass(frozen=True)
class Motion:
    shape: str
    colour: str
    start: tuple[float, float]  # centre (x, y) in pixels at frame 0
    velocity: tuple[float, float]  # pixels per frame
    half: float  # half extent in pixels
    image_size: int = 64

    def positions(self, frames: int) -> np.ndarray:
        """(frames, 2) centres, reflecting off the walls so the shape stays inside the frame."""
        lo, hi = self.half, self.image_size - self.half
        out = np.zeros((frames, 2), dtype=np.float32)
        for axis in range(2):
            span = hi - lo
            raw = self.start[axis] - lo + self.velocity[axis] * np.arange(frames)
            folded = np.mod(raw, 2 * span)  # triangle wave = elastic bounces
            out[:, axis] = lo + np.where(folded > span, 2 * span - folded, folded)
        return out

    def caption(self) -> str:
        direction = next(d for d, v in DIRECTIONS.items() if v == (_sign(self.velocity[0]), _sign(self.velocity[1])))
        return f"a {self.colour} {self.shape} moving {direction}"


def _sign(x: float) -> int:
    return 0 if abs(x) < 1e-6 else (1 if x > 0 else -1)


def sample_motion(rng: random.Random, image_size: int = 64, speed: float = 3.0) -> Motion:
    half = image_size * 0.12
    dx, dy = DIRECTIONS[rng.choice(list(DIRECTIONS))]
    norm = math.hypot(dx, dy)
    start = tuple(rng.uniform(half, image_size - half) for _ in range(2))
    pairs = [(s, c) for s in SHAPES for c in COLOURS if (c, s) not in HELD_OUT_PAIRS]  # never shown in training
    shape, colour = rng.choice(pairs)
    return Motion(shape, colour, start, (speed * dx / norm, speed * dy / norm), half, image_size)


def render_video(motion: Motion, frames: int) -> np.ndarray:
    """(frames, H, W, 3) uint8."""
    out = []
    for cx, cy in motion.positions(frames):
        image = Image.new("RGB", (motion.image_size, motion.image_size), BACKGROUND)
        draw_shape(ImageDraw.Draw(image), motion.shape, float(cx), float(cy), motion.half, COLOURS[motion.colour])
        out.append(np.asarray(image, dtype=np.uint8))
    return np.stack(out)


def track(frames: np.ndarray, colour: str) -> np.ndarray:
    """(T, 2) centroid of the pixels closest to `colour` in each frame (NaN where none is found)."""
    target = np.array(COLOURS[colour], dtype=np.float32)
    background = np.array(BACKGROUND, dtype=np.float32)
    out = np.full((len(frames), 2), np.nan, dtype=np.float32)
    for t, frame in enumerate(frames.astype(np.float32)):
        near = np.linalg.norm(frame - target, axis=-1) < 0.5 * np.linalg.norm(target - background)
        if near.sum() >= 4:
            ys, xs = np.nonzero(near)
            out[t] = (xs.mean(), ys.mean())
    return out


def score_video(frames: np.ndarray, motion: Motion, first_frame: int = 0) -> dict[str, float]:
    """Mean centroid error (pixels, and as a fraction of the image size) of frames[i] against the true
    position at frame first_frame + i; `found` is the fraction of frames where the object was seen."""
    truth = motion.positions(first_frame + len(frames))[first_frame:]
    seen = track(frames, motion.colour)
    ok = ~np.isnan(seen[:, 0])
    error = float(np.linalg.norm(seen[ok] - truth[ok], axis=1).mean()) if ok.any() else float(motion.image_size)
    return {"found": float(ok.mean()), "error_px": error, "error_frac": error / motion.image_size}
