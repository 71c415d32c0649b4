"""DPO on the guided distribution, and DPO-Positive: two changes to the objective, against plain DPO.

    PYTHONPATH=. python benchmarks/dpo_guided.py [--model emu3/assets/demo_model --seed 7 --n 1000]
    PYTHONPATH=. python benchmarks/dpo_guided.py --prompts 1000 --samples 8 \
        --variants "guidance=0;positive=5;positive=50" --output benchmarks/results/dpo_positive.json

The demo model samples images with classifier-free guidance (scale 1.5: log_softmax(u + 1.5 (c - u))),
but train-demo's DPO stage scores pairs under the conditional distribution c alone. With
`dpo.DPOConfig.guidance` the margin is taken on the guided log-probabilities, so the unconditional
stream is trained as well (away from chosen images, towards rejected ones). With
`dpo.DPOConfig.positive` (DPO-Positive, Pal et al. 2024) the margin is penalised wherever the chosen
image's likelihood falls below the reference's: the README's DPO section found DPO lowering the chosen
images' likelihood along with the rejected ones' (likelihood displacement).

From `--model`, pairs are sampled as train-demo samples them (its DPO prompts, `--prompts` of them,
`--samples` each at temperature 1, checker-ranked), then train-demo's DPO stage is run on them (one
pass, 8 pairs a step, learning rate 5e-6, beta 0.1, NLL weight 0.2; fp32) with each of `--variants`
(`;`-separated sets of `dpo.DPOConfig` fields, e.g. "guidance=1.5" or "positive=50,guidance=1.5";
"guidance=0" is plain DPO), and each model is scored on text-to-image at its sampling against `--model`
on the same prompts and seeds (paired differences). Writes benchmarks/results/dpo_guided.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.results_file import write_result
from emu3.data.shards import Corpus
from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference
from emu3.generate.pipeline import Pipeline
from emu3.recipes import dpo
from emu3.recipes.train_demo import DemoConfig, dpo_config, dpo_prompts, sample_preference_pairs

DEMO = ("lr", "epochs")  # variant fields that are train-demo's (dpo_lr, dpo_epochs), not DPOConfig's


def train(model: Path, prefs: Path, out: Path, fields: dict[str, float]) -> Path:
    """train-demo's DPO stage from `model` in fp32, with `fields` of dpo.DPOConfig changed ("lr" and
    "epochs" are train-demo's `dpo_lr` and `dpo_epochs`)."""
    if not (out / "model" / "config.json").exists():
        demo = {"dpo_" + k: fields[k] for k in DEMO if k in fields}
        cfg = dpo_config(DemoConfig(**demo), model, prefs, out)
        dpo.main(replace(cfg, bf16=False, vq=str(model), **{k: v for k, v in fields.items() if k not in DEMO}))
    return out / "model"


def parse_variant(text: str) -> dict[str, float]:
    """ "positive=50,guidance=1.5" -> {"positive": 50.0, "guidance": 1.5}."""
    known = {"guidance", "positive", "beta", "nll_weight", *DEMO}
    fields = dict(item.split("=") for item in text.split(","))
    if unknown := set(fields) - known:
        raise SystemExit(f"unknown DPO fields {sorted(unknown)}; choose from {sorted(known)}")
    return {k: float(v) for k, v in fields.items()}


def scored(pipe: Pipeline, cache: Path, n: int, seed: int) -> dict:
    """Text-to-image scores, kept in `cache` for reruns."""
    if cache.exists():
        return json.loads(cache.read_text())
    r = world.text_to_image(pipe, n=n, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({k: r[k] for k in ("overall", "by_objects", "items")}))
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="emu3/assets/demo_model", help="the model to start from")
    p.add_argument("--out", default="runs/dpo_guided")
    p.add_argument("--seed", type=int, default=7, help="evaluation seed (the README table uses 0)")
    p.add_argument("--n", type=int, default=1000, help="text-to-image prompts")
    p.add_argument("--prompts", type=int, default=800, help="DPO prompts (train-demo's: 800)")
    p.add_argument("--samples", type=int, default=4, help="images per prompt (train-demo's: 4)")
    p.add_argument("--variants", default="guidance=0;guidance=1.5;guidance=3", help="DPO settings to train")
    p.add_argument("--output", default="benchmarks/results/dpo_guided.json")
    args = p.parse_args()
    model, out, started = Path(args.model), Path(args.out), time.perf_counter()
    variants = [parse_variant(v) for v in args.variants.split(";")]
    prefs = out / f"prefs_{args.prompts}x{args.samples}"
    if not (prefs / "meta.json").exists():
        prompts, scorers = dpo_prompts(DemoConfig(dpo_prompts=args.prompts))
        print("pairs:", sample_preference_pairs(model, prompts, scorers, prefs, samples=args.samples), flush=True)
    pairs = len(Corpus(prefs)) // 2
    base = scored(Pipeline.load(model), out / f"start_seed{args.seed}_n{args.n}.json", args.n, args.seed)
    rows = [{"model": "start", "overall": base["overall"], "se": mean_se(base["items"])[1],
             "by_objects": base["by_objects"]}]  # fmt: skip
    print(f"start: {base['overall']:.4f} {base['by_objects']}", flush=True)
    for fields in variants:
        name = ", ".join(f"{k} {v:g}" for k, v in fields.items())
        tag = "_".join(f"{k}{v:g}" for k, v in sorted(fields.items()) if v or k != "guidance") or "plain"
        folder = train(model, prefs, out / f"dpo_{prefs.name}_{tag}", fields)
        r = scored(Pipeline.load(folder), folder.parent / f"eval_seed{args.seed}_n{args.n}.json", args.n, args.seed)
        d = paired_difference(r["items"], base["items"])
        rows.append({"model": "DPO, " + name, **fields, "overall": r["overall"], "se": mean_se(r["items"])[1],
                     "by_objects": r["by_objects"], "minus_start": d})  # fmt: skip
        print(f"{name}: {r['overall']:.4f}, - start {d['difference']:+.4f} (2 SE {2 * d['se']:.4f}) "
              f"{r['by_objects']}", flush=True)  # fmt: skip
    result = {"benchmark": "dpo_guided", "model": str(model), "eval_seed": args.seed, "prompts": args.n,
              "dpo_prompts": args.prompts, "samples_per_prompt": args.samples, "pairs": pairs,
              "rows": rows, "minutes": round((time.perf_counter() - started) / 60, 1)}  # fmt: skip
    write_result(args.output, result)


if __name__ == "__main__":
    main()
