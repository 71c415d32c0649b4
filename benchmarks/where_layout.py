"""Does a question read before the image let the model say where a named object is?

    python benchmarks/where_layout.py --model runs/demo/sft/model [--scenes 3000 --steps 200]

From one model folder (with its tokenizer and VQ), fine-tune twice on the same where-questions about
scenes of 2-3 objects ("where is the red circle?"), once asked after the image (BAAI's layout) and once
before it (`question_first`), at the demo SFT stage's learning rate; then ask each fine-tuned model,
in its own layout, about scenes it has not seen. Writes benchmarks/results/where_layout.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from emu3.data.pretokenize import PretokenizeConfig, pretokenize
from emu3.generate.pipeline import Pipeline
from emu3.recipes import sft
from emu3.recipes.common import DataConfig, LossWeights, TrainConfig
from emu3.recipes.train_demo import DEMO_MODEL
from emu3.train.optim import OptimConfig
from emu3.worlds import data, shapes
from emu3.worlds.data import EVAL_SEED_OFFSET

LAYOUTS = {"image_first": ("qa:where", False), "question_first": ("qa_first:where", True)}


def probe(pipe: Pipeline, n_scenes: int, seed: int) -> float:
    """Accuracy on where-questions about every uniquely named object of unseen 2-3 object scenes."""
    rng = random.Random(EVAL_SEED_OFFSET + 70_000 + seed)
    side = pipe.latent_size()[0] * pipe.vq.cfg.spatial_factor
    cases = []
    for _ in range(n_scenes):
        scene = shapes.sample_scene(rng, n_objects=rng.choice([2, 3]))
        image = shapes.render(scene, side)
        cases += [(image, q, a) for q, a in shapes.where_questions(scene)]
    said = []
    for i in range(0, len(cases), 32):
        chunk = cases[i : i + 32]
        said += pipe.ask_batch([c[0] for c in chunk], [c[1] for c in chunk])
    return float(np.mean([s.strip().rstrip(".") == a for s, (_, _, a) in zip(said, cases, strict=True)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder to fine-tune (e.g. a train-demo SFT checkpoint)")
    p.add_argument("--out", default="runs/where_layout")
    p.add_argument("--scenes", type=int, default=3000, help="training scenes")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3 / 3)
    p.add_argument("--probe-scenes", type=int, default=150)
    p.add_argument("--output", default="benchmarks/results/where_layout.json")
    args = p.parse_args()

    out = Path(args.out)
    base = Pipeline.load(args.model)
    side = base.latent_size()[0] * base.vq.cfg.spatial_factor
    records = list(data.where_questions(args.scenes, seed=1, image_size=side))
    # One question per example, in both layouts: kinds "qa:where" (image first), "qa_first:where".
    stats = pretokenize(records, out / "tokens", base.vq, base.tok, PretokenizeConfig(question_first=True))
    plain = base.with_config(question_first=False, question_twice=False)
    result = {"model": args.model, "scenes": args.scenes, "examples": stats["examples"] // 2, "steps": args.steps,
              "lr": args.lr, "before": probe(plain, args.probe_scenes, 0)}  # fmt: skip
    for name, (kind, first) in LAYOUTS.items():
        t0 = time.perf_counter()
        cfg = TrainConfig(out=str(out / name), init=args.model, vq=args.model, model=DEMO_MODEL,
                          data=DataConfig(corpus=str(out / "tokens"), seq_len=416, batch_size=16, kinds=(kind,)),
                          optim=OptimConfig(lr=args.lr, min_lr=args.lr / 10, warmup_steps=20),
                          loss=LossWeights(text=1.0, vision=0.5), steps=args.steps, save_every=args.steps,
                          log_every=50, resume=False)  # fmt: skip
        sft.main(cfg)
        rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        tuned = Pipeline.load(out / name / "model").with_config(question_first=first, question_twice=False)
        result[name] = {"accuracy": probe(tuned, args.probe_scenes, 0), "last_loss": rows[-1]["loss"],
                        "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        print(name, result[name])
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
