"""Does the understanding model read the generation model's own images?

    python benchmarks/read_own_images.py [--model FOLDER] [--reader NAME=FOLDER ...] [--n 500 --seed 0]

`emu3.eval.world.read_drawings` for each reader: the generation model of --model draws an image for
each of `n` held-out prompts (its own sampling); the world's checker parses each drawing into objects,
and one question about what the checker found is asked of the reader (default: the folder's
understanding model, <folder>/chat, else the folder's model). A reader is right when its answer matches
the checker's parse, so a drawing that misses its prompt still counts. Drawings and questions are
seeded, so every reader answers the same ones and their differences are paired (each against the
first). Writes benchmarks/results/read_own_images.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emu3.commands import default_model_folder
from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference
from emu3.generate.pipeline import Pipeline, chat_model_folder


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
    drawer = Pipeline.load(folder, dtype="fp32")
    results: dict[str, dict] = {}
    for name, reader_folder in readers.items():  # the same drawings and questions for each (seeded)
        start = time.perf_counter()
        r = world.read_drawings(drawer, args.n, args.seed, reader=Pipeline.load(reader_folder, dtype="fp32"))
        mean, se = mean_se(r["items"])
        results[name] = {"folder": reader_folder, "accuracy": mean, "se": se, "items": r["items"]}
        print(f"{name:12s} reads its drawings: {mean:.3f} +- {se:.3f} (n={len(r['items'])}, "
              f"{time.perf_counter() - start:.0f} s)")  # fmt: skip
    names = list(results)
    comparisons = [{"what": f"{b} - {names[0]}", **paired_difference(results[b]["items"], results[names[0]]["items"])}
                   for b in names[1:]]  # fmt: skip
    for c in comparisons:
        print(f"{c['what']}: {c['difference']:+.3f} (2 SE {2 * c['se']:.3f})")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(folder), "n": args.n, "seed": args.seed,
                               "results": results, "comparisons": comparisons}, indent=1) + "\n")  # fmt: skip
    print(f"written: {out}")


if __name__ == "__main__":
    main()
