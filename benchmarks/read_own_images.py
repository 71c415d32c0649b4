"""Does the understanding model read the generation model's own images?

    python benchmarks/read_own_images.py [--model FOLDER] [--reader NAME=FOLDER ...] [--n 500 --seed 0]

The generation model of --model draws an image for each of `n` held-out prompts (its own sampling);
the world's checker parses each drawing into objects, and one question about what the checker found is
asked of every reader (default: the folder's understanding model, <folder>/chat, else the folder's
model). A reader is right when its answer matches the checker's parse, so a drawing that misses its
prompt still counts, as long as the answer describes what was drawn. Images where the checker finds
nothing are left out. Readers answer the same questions about the same images, so their differences
are paired (each against the first). Writes benchmarks/results/read_own_images.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from emu3.commands import default_model_folder
from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference
from emu3.generate.pipeline import Pipeline, chat_model_folder
from emu3.worlds import checker, shapes
from emu3.worlds.data import EVAL_SEED_OFFSET


def drawn_questions(pipe: Pipeline, n: int, seed: int) -> list[tuple]:
    """(image, question, the checker's answer) for the drawings of n held-out prompts."""
    rng = random.Random(EVAL_SEED_OFFSET + 70_000 + seed)
    scenes = [shapes.sample_scene(rng) for _ in range(n)]
    prompts = [shapes.caption(s, rng) for s in scenes]
    images = world._batched(lambda ps, i: pipe.text_to_image(ps, seed=seed + i), prompts)
    cases = []
    for image in images:
        found = checker.detect(image)
        if found.objects:
            cases += [(image, q, a) for q, a in shapes.questions(shapes.Scene(found.objects), rng, n=1)]
    return cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder that draws (default: the shipped demo model)")
    p.add_argument("--reader", action="append", default=None,
                   help="NAME=FOLDER of a model that answers (repeatable; default: the folder's chat/)")  # fmt: skip
    p.add_argument("--n", type=int, default=500, help="prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="benchmarks/results/read_own_images.json")
    args = p.parse_args()
    folder = Path(args.model) if args.model else default_model_folder()
    readers = dict(r.split("=", 1) for r in args.reader) if args.reader else {
        "chat": str(chat_model_folder(folder) or folder)}  # fmt: skip
    start = time.perf_counter()
    cases = drawn_questions(Pipeline.load(folder, dtype="fp32"), args.n, args.seed)
    print(f"{len(cases)} drawings with objects in {time.perf_counter() - start:.0f} s")
    results: dict[str, dict] = {}
    for name, reader_folder in readers.items():
        reader = Pipeline.load(reader_folder, dtype="fp32")
        said = []
        for i in range(0, len(cases), 32):
            said += reader.ask_batch([c[0] for c in cases[i : i + 32]], [c[1] for c in cases[i : i + 32]])
        items = [float(world._norm(r) == world._norm(c[2])) for r, c in zip(said, cases, strict=True)]
        mean, se = mean_se(items)
        results[name] = {"folder": reader_folder, "accuracy": mean, "se": se, "items": items}
        print(f"{name:12s} reads its drawings: {mean:.3f} +- {se:.3f} (n={len(items)})")
    names = list(results)
    comparisons = [{"what": f"{b} - {names[0]}", **paired_difference(results[b]["items"], results[names[0]]["items"])}
                   for b in names[1:]]  # fmt: skip
    for c in comparisons:
        print(f"{c['what']}: {c['difference']:+.3f} (2 SE {2 * c['se']:.3f})")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(folder), "n": args.n, "seed": args.seed, "questions": len(cases),
                               "results": results, "comparisons": comparisons}, indent=1) + "\n")  # fmt: skip
    print(f"written: {out}")


if __name__ == "__main__":
    main()
