"""What a bare vision tokenizer allows, before any transformer: its image round trip and its video floor.

    PYTHONPATH=. python benchmarks/vq_floors.py emu3/assets/demo_model runs/vq/model -o vq_floors.json

For each folder (a tokenizer, or a model folder holding one):
- `image_round_trip`: the checker's overall score on `emu3 eval`'s 200 held-out scenes encoded and
  decoded (its `vq_round_trip` task), at the tokenizer's own tiling;
- `video_floor`: the video-extension evaluation's clips encoded and decoded whole, scored on the frames
  an extension predicts (`video_scaling.round_trip_floor`), with `chunks_alone` beside it.

Used for the clip-length runs in the README ("Video: the tokenizer holds it back"); their training
commands are recorded in benchmarks/results/vq_clip_length.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.video_scaling import round_trip_floor
from emu3.convert.vq import load_vision_tokenizer
from emu3.eval import world as world_eval
from emu3.vision.image_io import to_pixels, to_uint8


def image_round_trip(vq, n: int, size: int) -> float:
    @torch.inference_mode()
    def through(images: list[np.ndarray]) -> list[np.ndarray]:
        pixels = torch.stack([to_pixels(image, vq.cfg.pixel_multiple) for image in images])
        return [to_uint8(x) for batch in pixels.split(50) for x in vq.decode_image(vq.encode_image(batch))]

    return world_eval.scenes_round_trip(through, size, n)["overall"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folders", nargs="+")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--size", type=int, default=72)
    p.add_argument("-o", "--output", default="vq_floors.json")
    a = p.parse_args()
    res: dict = {"args": vars(a), "tokenizers": {}}
    for folder in a.folders:
        vq = load_vision_tokenizer(folder).eval()
        res["tokenizers"][folder] = {
            "image_round_trip": image_round_trip(vq, a.images, a.size),
            "video_floor": round_trip_floor(vq, a.clips, a.size, "cpu"),
        }
        print(folder, json.dumps(res["tokenizers"][folder]), flush=True)
        Path(a.output).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
