"""How much does classifier-free guidance help, and at which sampling temperature?

    python benchmarks/guidance_sweep.py [--model FOLDER] [--temperatures 0.6,0.8,1.0 --guidance 1,1.5,2,3]
                                        [--min-p 0,0.1] [--top-k 8,64]

Text-to-image on the same held-out prompts and seeds for every (min-p, temperature, guidance), the rest
of the sampling as the model's defaults (top-k etc.); for each min-p and temperature, each guidance
against the first (scale 1: none) as a paired difference. min-p is measured on the unguided distribution
(`SamplingConfig.min_p`), so the baseline without guidance is filtered the same way. Default model: the
shipped demo model. Writes benchmarks/results/guidance_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emu3.commands import default_model_folder
from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference
from emu3.generate.pipeline import Pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
    p.add_argument("--temperatures", default="0.6,0.8,1.0")
    p.add_argument("--guidance", default="1,1.5,2,3", help="scales; the first is the baseline (1: none)")
    p.add_argument("--min-p", default="0", help="min-p values (0: off, BAAI's sampling)")
    p.add_argument("--top-k", default="", help="top-k values (default: the model's)")
    p.add_argument("--seeds", default="7,8", help="evaluation seeds (the README table uses 0)")
    p.add_argument("--n", type=int, default=500, help="prompts per seed")
    p.add_argument("--output", default="benchmarks/results/guidance_sweep.json")
    args = p.parse_args()
    folder = Path(args.model) if args.model else default_model_folder()
    temperatures = [float(t) for t in args.temperatures.split(",")]
    scales = [float(g) for g in args.guidance.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    min_ps = [float(m) for m in args.min_p.split(",")]
    pipe = Pipeline.load(folder)
    top_ks = [int(k) for k in args.top_k.split(",")] if args.top_k else [pipe.cfg.top_k]
    started, rows = time.perf_counter(), []
    for top_k, min_p, temperature in ((k, m, t) for k in top_ks for m in min_ps for t in temperatures):
        sampler = pipe.with_config(temperature=temperature, min_p=min_p, top_k=top_k, prompt_sampling=())
        items = {}
        for g in scales:
            runs = [world.text_to_image(sampler, n=args.n, seed=s, guidance=g) for s in seeds]
            items[g] = [x for r in runs for x in r["items"]]
            mean, se = mean_se(items[g])
            by_objects = {k: float(np.mean([r["by_objects"][k] for r in runs])) for k in runs[0]["by_objects"]}
            row = {
                "top_k": top_k,
                "min_p": min_p,
                "temperature": temperature,
                "guidance": g,
                "overall": mean,
                "se": se,
                "by_objects": by_objects,
            }
            if g != scales[0]:
                row["minus_baseline"] = paired_difference(items[g], items[scales[0]])
            rows.append(row)
            extra = row.get("minus_baseline")
            shown = f", - g={scales[0]} {extra['difference']:+.4f} (2 SE {2 * extra['se']:.4f})" if extra else ""
            print(f"top-k={top_k} min-p={min_p} T={temperature} g={g}: {mean:.4f} +- {se:.4f}{shown}", flush=True)
    result = {"benchmark": "guidance_sweep", "model": str(folder), "top_k": top_ks, "eval_seeds": seeds,
              "prompts_per_seed": args.n, "rows": rows,
              "minutes": round((time.perf_counter() - started) / 60, 1)}  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
