"""What strong guidance draws with and without min-p: one picture, for the README.

    python benchmarks/guidance_min_p_grid.py [--model FOLDER] [--guidance 1,3,6] [--min-p 0.1]

Four held-out three-object prompts (evaluation seed 7), two images each, at temperature 1; one row per
(guidance, min-p off / on), every row with the same sampling seeds. Each image is scored by the world's
checker (1 = the scene exactly right). Writes benchmarks/results/guidance_min_p_grid.{png,json}.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from emu3.commands import default_model_folder
from emu3.generate.pipeline import Pipeline
from emu3.worlds import checker, shapes
from emu3.worlds.data import EVAL_SEED_OFFSET


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
    p.add_argument("--guidance", default="1,3,6")
    p.add_argument("--min-p", type=float, default=0.1)
    p.add_argument("--output", default="benchmarks/results/guidance_min_p_grid")
    args = p.parse_args()
    folder = Path(args.model) if args.model else default_model_folder()
    rng = random.Random(EVAL_SEED_OFFSET + 7)
    scenes = [shapes.sample_scene(rng, n_objects=3) for _ in range(4)]
    prompts = [shapes.caption(s, rng) for s in scenes]
    pipe = Pipeline.load(folder).with_config(temperature=1.0, prompt_sampling=())
    rows, scores = [], []
    for g in (float(x) for x in args.guidance.split(",")):
        for min_p in (0.0, args.min_p):
            images = pipe.with_config(min_p=min_p).text_to_image(prompts, num_images=2, guidance=g, seed=1)
            row = [checker.score_image(np.asarray(im), scenes[i // 2])["overall"] for i, im in enumerate(images)]
            scores.append({"guidance": g, "min_p": min_p, "overall": row})
            rows.append(np.concatenate([np.asarray(im) for im in images], axis=1))
            print(f"guidance {g}, min-p {min_p}: {row}")
    grid = np.concatenate(rows, axis=0)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(f"{out}.png")
    meta = {"model": str(folder), "prompts": prompts, "temperature": 1.0, "rows": scores}
    Path(f"{out}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"written {out}.png, {out}.json")


if __name__ == "__main__":
    main()
