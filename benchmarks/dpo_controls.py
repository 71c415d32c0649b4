"""Does DPO on checker-ranked pairs teach the demo model anything? Variants against controls.

    PYTHONPATH=. python benchmarks/dpo_controls.py --run runs/demo [--seeds 7,8 --n 500]

From a `train-demo` run folder (its SFT model and its preference corpus), train DPO variants as
train-demo's DPO stage does (one pass over the pairs, beta 0.1, NLL weight 0.2), and score
text-to-image on the same held-out prompts and seeds as the SFT model (paired differences): every
token of the two images counted (as train-demo does by default) or only the tokens where they differ
(`mask_shared`), at train-demo's learning rate (5e-6) and at 4x, each also on the same pairs with
chosen and rejected swapped. The swapped runs are the control: if DPO learns the preference, a
swapped run must score lower than its unswapped twin, not the same. With `--on-policy-prompts N`,
also pairs sampled from N 3-object prompts (where the SFT model fails most) at the model's own
temperature.
Writes benchmarks/results/dpo_controls.json.
"""

from __future__ import annotations

import argparse
import random
import time
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.results_file import write_result
from emu3.data.batches import preference_pairs
from emu3.data.shards import Corpus, Example, write_shard
from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference
from emu3.generate.pipeline import Pipeline, PipelineConfig
from emu3.recipes import dpo
from emu3.recipes.train_demo import DemoConfig, dpo_config, sample_preference_pairs, scene_score
from emu3.worlds import shapes


def swapped(corpus: Path, out: Path) -> Path:
    """The same pairs with chosen and rejected exchanged."""
    if not (out / "meta.json").exists():
        flipped = []
        for chosen, rejected in preference_pairs(list(Corpus(corpus))):
            flipped += [Example(rejected.tokens, rejected.labels, "chosen"),
                        Example(chosen.tokens, chosen.labels, "rejected")]  # fmt: skip
        write_shard(out, "pairs", flipped)
    return out


def on_policy_pairs(sft: Path, out: Path, prompts: int, objects: int, seed: int) -> Path:
    """Pairs from `prompts` scenes of `objects` objects, sampled at the SFT model's own temperature."""
    if not (out / "meta.json").exists():
        rng = random.Random(seed + 7)
        scenes = [shapes.sample_scene(rng, n_objects=objects) for _ in range(prompts)]
        captions = [shapes.caption(s, rng) for s in scenes]
        temperature = PipelineConfig.read(sft).temperature
        print(sample_preference_pairs(sft, captions, [partial(scene_score, s) for s in scenes], out,
                                      temperature=temperature, seed=seed))  # fmt: skip
    return out


def train(sft: Path, prefs: Path, out: Path, lr: float, masked: bool) -> Path:
    """train-demo's DPO stage (one pass over `prefs`) at learning rate `lr`."""
    if not (out / "model" / "config.json").exists():
        dpo.main(dpo_config(DemoConfig(dpo_lr=lr, dpo_mask_shared=masked), sft, prefs, out))
    return out / "model"


def score(folder: Path, seeds: list[int], n: int) -> tuple[list[float], dict]:
    pipe = Pipeline.load(folder)
    items, by_objects = [], []
    for seed in seeds:
        r = world.text_to_image(pipe, n=n, seed=seed)
        items += r["items"]
        by_objects.append(r["by_objects"])
    return items, {k: float(np.mean([b[k] for b in by_objects])) for k in by_objects[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a train-demo run folder (with sft/model and preferences/)")
    p.add_argument("--out", default="runs/dpo_controls")
    p.add_argument("--seeds", default="7,8", help="evaluation seeds (the README table uses 0)")
    p.add_argument("--n", type=int, default=500, help="text-to-image prompts per seed")
    p.add_argument("--on-policy-prompts", type=int, default=0, help="> 0: also on-policy 3-object pairs")
    p.add_argument("--output", default="benchmarks/results/dpo_controls.json")
    args = p.parse_args()
    run, out, seeds = Path(args.run), Path(args.out), [int(s) for s in args.seeds.split(",")]
    sft, prefs = run / "sft" / "model", run / "preferences"
    started = time.perf_counter()
    flipped = swapped(prefs, out / "prefs_swapped")
    variants = {}  # name: (pairs, learning rate, only the differing tokens)
    for masked in (False, True):
        tokens = "differing tokens" if masked else "all tokens"
        for lr in (5e-6, 2e-5):
            variants[f"{tokens}, lr {lr:g}"] = (prefs, lr, masked)
            variants[f"{tokens}, lr {lr:g}, swapped"] = (flipped, lr, masked)
    if args.on_policy_prompts:
        on_policy = on_policy_pairs(sft, out / "prefs_on_policy", args.on_policy_prompts, 3, seed=0)
        for masked in (False, True):
            variants[f"on-policy 3-object, {'differing' if masked else 'all'} tokens, lr 5e-06"] = (
                on_policy,
                5e-6,
                masked,
            )
    base, base_objects = score(sft, seeds, args.n)
    mean, se = mean_se(base)
    rows = [{"model": "SFT", "overall": mean, "se": se, "by_objects": base_objects}]
    print(f"SFT: {mean:.4f} +- {se:.4f} {base_objects}", flush=True)
    for i, (name, (pairs, lr, masked)) in enumerate(variants.items()):
        folder = train(sft, pairs, out / f"dpo{i}", lr, masked)
        items, objects = score(folder, seeds, args.n)
        mean, se = mean_se(items)
        d = paired_difference(items, base)
        rows.append({"model": name, "pairs": len(Corpus(pairs)) // 2, "lr": lr, "mask_shared": masked,
                     "overall": mean, "se": se, "by_objects": objects, "minus_sft": d})  # fmt: skip
        print(f"{name}: {mean:.4f} +- {se:.4f}, - SFT {d['difference']:+.4f} (2 SE {2 * d['se']:.4f}) {objects}",
              flush=True)  # fmt: skip
    result = {"benchmark": "dpo_controls", "run": str(run), "eval_seeds": seeds, "prompts_per_seed": args.n,
              "rows": rows, "minutes": round((time.perf_counter() - started) / 60, 1)}  # fmt: skip
    write_result(args.output, result)


if __name__ == "__main__":
    main()
