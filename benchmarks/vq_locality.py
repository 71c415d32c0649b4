"""How local a vision tokenizer's codes are, on the shapes world: an object is encoded alone and
beside a second object in another cell; the fraction of its cell's codes that stay the same is the
measure (1.0: a code depends only on the pixels near it). Also the number of distinct codes that the
empty background takes at one position over those scenes. Prints and writes one JSON line.

    python benchmarks/vq_locality.py VQ_OR_MODEL_FOLDER [VQ_OR_MODEL_FOLDER ...] [--scenes 200]

Used to show what `locality_weight` in configs/train_vq/demo.yaml buys (emu3/vision/locality.py).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from emu3.convert.vq import load_vision_tokenizer
from emu3.vision.image_io import to_pixels
from emu3.worlds import shapes


def measure(folder: str, scenes: int, size: int, seed: int = 0) -> dict:
    vq = load_vision_tokenizer(folder).eval()
    rng = random.Random(seed)
    cell, same, background = size // 3 // vq.cfg.spatial_factor, [], []  # codes per layout cell
    for _ in range(scenes):
        a, b = shapes.sample_scene(rng, n_objects=2, split="any").objects
        pair = [shapes.render(shapes.Scene((a,)), size), shapes.render(shapes.Scene((a, b)), size)]
        codes = vq.encode_image(torch.stack([to_pixels(i, vq.cfg.spatial_factor) for i in pair])).numpy()
        r, c = a.cell[0] * cell, a.cell[1] * cell
        block = codes[:, r : r + cell, c : c + cell]
        same.append(float((block[0] == block[1]).mean()))
        er, ec = next((i, j) for i in range(3) for j in range(3) if (i, j) not in (a.cell, b.cell))
        background.append(int(codes[1, er * cell + cell // 2, ec * cell + cell // 2]))
    return {"folder": folder, "scenes": scenes, "object_codes_unchanged": round(float(np.mean(same)), 4),
            "background_codes_at_one_cell_centre": len(set(background))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--size", type=int, default=72)
    ap.add_argument("-o", "--out", default="benchmarks/results/vq_locality.json")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rows = [measure(f, args.scenes, args.size) for f in args.folders]
    for row in rows:
        print(json.dumps(row))
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
