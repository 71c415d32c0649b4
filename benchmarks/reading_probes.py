"""What a decoder reads from its vision tokenizer's codes: three probes of the shapes world.

    PYTHONPATH=. python benchmarks/reading_probes.py NAME=FOLDER [NAME=FOLDER ...] [--output FILE]

For each model folder (e.g. train-demo's <out>/pretrain/model on different tokenizers):
- single_object_colour: "what colour is the <shape>?" about one object, every seen colour-shape pair
  at both sizes in three cells (72 questions): can it read a colour at all?
- colour_binding: the same question about two objects of other shapes and colours (emu3 eval's task,
  n=200, seed 0, as train-demo's reading check): the asked object's colour ("accuracy") or the other's
  ("other"). 0.5 / 0.5: it reads both colours but not which shape has which.
- is_there_auc: "is there a <colour> <shape>?" about 200 held-out scenes, half with the object; the
  logit of " yes" minus " no" at the answer, and how well it ranks present above absent (AUC; 0.5:
  not at all, whatever the model answers).
Writes benchmarks/results/reading_probes.json (or --output).
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from benchmarks.results_file import write_result
from emu3.eval import world
from emu3.generate.pipeline import Pipeline
from emu3.worlds import shapes
from emu3.worlds.data import EVAL_SEED_OFFSET


def single_object_colour(pipe: Pipeline, side: int) -> float:
    pairs = [(s, c) for s in shapes.SHAPES for c in shapes.COLOURS if (c, s) not in shapes.HELD_OUT_PAIRS]
    cells = ((0, 0), (1, 1), (2, 1))
    cases = [(shapes.Shape(s, c, z, cell), f"what colour is the {s}?") for s, c in pairs for z in shapes.SIZES
             for cell in cells]  # fmt: skip
    images = [shapes.render(shapes.Scene((obj,)), side) for obj, _ in cases]
    said = [a for i in range(0, len(cases), 36)
            for a in pipe.ask_batch(images[i : i + 36], [q for _, q in cases[i : i + 36]])]  # fmt: skip
    return float(np.mean([a.strip() == obj.colour for a, (obj, _) in zip(said, cases, strict=True)]))


@torch.inference_mode()
def is_there_auc(pipe: Pipeline, side: int, n: int = 200) -> dict:
    rng = random.Random(EVAL_SEED_OFFSET + 90_000)
    (yes,), (no,) = pipe.tok.encode(" yes"), pipe.tok.encode(" no")
    margins, present = [], []
    for _ in range(n):
        scene = shapes.sample_scene(rng)
        question, answer = shapes.exists_question(scene, rng)
        (ids,) = pipe.question_prompts([shapes.render(scene, side)], [question])
        logits = pipe.decoder(torch.tensor([ids], device=pipe.generator.device))[0, -1].float()
        margins.append(float(logits[yes] - logits[no]))
        present.append(answer == "yes")
    m, p = np.array(margins), np.array(present)
    auc = float(np.mean(m[p][:, None] > m[~p][None, :]))
    return {"auc": round(auc, 4), "says_yes": round(float(np.mean(m > 0)), 4),
            "accuracy": round(float(np.mean((m > 0) == p)), 4), "n": n}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=FOLDER")
    ap.add_argument("--output", default="benchmarks/results/reading_probes.json")
    args = ap.parse_args()
    rows = []
    for spec in args.models:
        name, _, folder = spec.rpartition("=")
        pipe = Pipeline.load(folder, dtype="fp32")
        side = pipe.latent_size()[0] * pipe.vq.cfg.spatial_factor  # the images it is asked about
        binding = world.colour_binding(pipe, n=200, seed=0)
        row = {"name": name or folder, "folder": folder, "single_object_colour": single_object_colour(pipe, side),
               "colour_binding": binding["accuracy"], "colour_binding_other": binding["other"],
               "is_there": is_there_auc(pipe, side)}  # fmt: skip
        print(row)
        rows.append(row)
    write_result(args.output, {"what": __doc__.splitlines()[0], "rows": rows})


if __name__ == "__main__":
    main()
