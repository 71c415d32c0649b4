"""How local a vision tokenizer's codes are, on the shapes world: an object is encoded alone and
beside a second object in another cell; the fraction of its cell's codes that stay the same is the
measure (1.0: a code depends only on the pixels near it). Also the number of distinct codes that the
empty background takes at one position over those scenes. Prints and writes one JSON line.

    python benchmarks/vq_locality.py VQ_OR_MODEL_FOLDER [VQ_OR_MODEL_FOLDER ...] [--scenes 200]

Used to show what `locality_weight` in configs/train_vq/demo.yaml buys (emu3/vision/locality.py).

With --stitched, also the decoder's side: scenes of 1, 2 and 3 objects decoded from the codes of the
whole image and from codes stitched together from one-object encodings (each object's layout cell
from the encoding of its own one-object image, every other cell from the empty image), both scored
by the world's checker. A tokenizer whose codes were local would score the same on both.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from emu3.convert.vq import load_vision_tokenizer
from emu3.vision.image_io import to_pixels, to_uint8
from emu3.vision.vq import VQModel
from emu3.worlds import checker, shapes


def _encode(vq: VQModel, images: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 images -> (B, h, w) codes."""
    return vq.encode_image(torch.stack([to_pixels(i, vq.cfg.pixel_multiple) for i in images]))


def measure(vq: VQModel, folder: str, scenes: int, size: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    cell, same, background = size // 3 // vq.cfg.spatial_factor, [], []  # codes per layout cell
    for _ in range(scenes):
        a, b = shapes.sample_scene(rng, n_objects=2, split="any").objects
        pair = [shapes.render(shapes.Scene((a,)), size), shapes.render(shapes.Scene((a, b)), size)]
        codes = _encode(vq, pair).numpy()
        r, c = a.cell[0] * cell, a.cell[1] * cell
        block = codes[:, r : r + cell, c : c + cell]
        same.append(float((block[0] == block[1]).mean()))
        er, ec = next((i, j) for i in range(3) for j in range(3) if (i, j) not in (a.cell, b.cell))
        background.append(int(codes[1, er * cell + cell // 2, ec * cell + cell // 2]))
    return {"folder": folder, "scenes": scenes, "object_codes_unchanged": round(float(np.mean(same)), 4),
            "background_codes_at_one_cell_centre": len(set(background))}  # fmt: skip


def stitched(vq: VQModel, folder: str, scenes: int, size: int, seed: int = 5) -> dict:
    cell = size // 3 // vq.cfg.spatial_factor

    def score(codes: torch.Tensor, truth: list[shapes.Scene]) -> float:
        images = [to_uint8(p) for p in vq.decode_image(codes)]
        scores = [checker.score_image(i, s)["overall"] for i, s in zip(images, truth, strict=True)]
        return round(float(np.mean(scores)), 4)

    empty = _encode(vq, [shapes.render(shapes.Scene(()), size)])[0]
    rng = random.Random(seed)
    out: dict = {"folder": folder, "scenes_per_count": scenes, "whole": {}, "stitched": {}}
    for n in (1, 2, 3):
        truth = [shapes.sample_scene(rng, n_objects=n, split="any") for _ in range(scenes)]
        whole = _encode(vq, [shapes.render(s, size) for s in truth])
        parts = []
        for scene in truth:
            codes = empty.clone()
            alone = _encode(vq, [shapes.render(shapes.Scene((o,)), size) for o in scene.objects])
            for obj, own in zip(scene.objects, alone, strict=True):
                r, c = obj.cell[0] * cell, obj.cell[1] * cell
                codes[r : r + cell, c : c + cell] = own[r : r + cell, c : c + cell]
            parts.append(codes)
        out["whole"][n], out["stitched"][n] = score(whole, truth), score(torch.stack(parts), truth)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--size", type=int, default=72)
    ap.add_argument("--stitched", action="store_true", help="also decode stitched one-object codes (60 scenes each)")
    ap.add_argument("-o", "--out", default="benchmarks/results/vq_locality.json")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tokenizers = {f: load_vision_tokenizer(f).eval() for f in args.folders}
    rows = [measure(vq, f, args.scenes, args.size) for f, vq in tokenizers.items()]
    if args.stitched:
        rows += [stitched(vq, f, 60, args.size) for f, vq in tokenizers.items()]
    for row in rows:
        print(json.dumps(row))
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
