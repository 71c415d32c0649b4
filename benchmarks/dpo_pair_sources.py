"""Three more sources of DPO pairs, tried from the generation model: branches, the scene, broken scenes.

    PYTHONPATH=. python benchmarks/dpo_pair_sources.py --model runs/demo/gen/model [--seed 7 --n 1000]
    PYTHONPATH=. python benchmarks/dpo_pair_sources.py --model runs/demo/gen/model --sources swap \
        --output benchmarks/results/dpo_pair_sources_swap.json

The README's DPO section found that DPO on two independent samples of a prompt, ranked by the checker,
lowers text-to-image: the two images differ from their first differing code on, and the model cannot
tell the two bindings apart. These sources change what a pair holds:

- branches: for each of `--branch-prompts` scenes of 2-3 objects, one sample (the trunk) and
  `--branches` samples that continue the trunk from the code row where a row of the 3x3 layout starts
  (3 or 6, drawn at random). The trunk and its branches share every token before that row, so a pair
  differs only after it, and its labels start there (the shared rows are part of the prompt). Every two
  of a group whose ranking scores differ by 0.2 make a pair, as in train-demo. `--branch-rows` picks
  other rows to branch at.
- truth: for each of `--truth-prompts` 3-object scenes (where the model fails most), two samples; the
  first one the checker marks wrong is rejected, and the scene itself, drawn and encoded by the model's
  own vision tokenizer, is chosen: the kind of image the model was fine-tuned on (like SPIN, Chen et al.
  2024, with only wrong samples rejected). Trained twice: every token, and only the differing ones.
- swap: hard negatives without sampling. For each of `--swap-prompts` scenes of 2-3 objects, the scene
  drawn as asked is chosen, and the same scene with one binding broken (two objects exchange colours or
  shapes, or one takes the other's colour) is rejected, both encoded by the model's own tokenizer. The
  two differ only in the codes of the objects changed, so a pair's first difference is the mistake
  itself. Trained twice, as truth is.

Each is trained as train-demo's DPO stage trains (one pass, 8 pairs a step, learning rate 5e-6, beta 0.1,
NLL weight 0.2; fp32 here) from `--model`, and scored on text-to-image at the model's sampling, paired
against `--model` on the same prompts and seeds. Sampling seeds are fixed, so a rerun gives the same pairs;
the start's scores are kept in `--out` for reruns. For each source it also records how the start model
already ranks its pairs, and for each model the kinds of mistakes in `--mistakes` 3-object scenes.
Writes benchmarks/results/dpo_pair_sources.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.results_file import write_result
from emu3.data.batches import pad, preference_pairs
from emu3.data.shards import Corpus, Example, write_shard
from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference
from emu3.generate.constraints import image_plan
from emu3.generate.pipeline import Pipeline
from emu3.recipes import dpo
from emu3.recipes.train_demo import DemoConfig, dpo_config, ranked_pairs, scene_score
from emu3.tokens import format as fmt
from emu3.tokens import templates
from emu3.train.losses import sequence_logps
from emu3.worlds import checker, shapes

BATCH = 8  # prompts sampled together


def _labelled(ids: list[int], keep: int, kind: str) -> Example:
    """A pair member whose first `keep` tokens are prompt (no loss, no margin)."""
    return Example(ids, [-100] * keep + ids[keep:], kind)


def branch_pairs(pipe: Pipeline, prompts: int, branches: int, rows: tuple[int, ...], out: Path) -> dict:
    h, w = pipe.latent_size()
    rng = random.Random(4242)
    scenes = []
    while len(scenes) < prompts:
        scene = shapes.sample_scene(rng)
        if len(scene.objects) >= 2:
            scenes.append(scene)
    captions = [shapes.caption(s, rng) for s in scenes]
    guidance, sampling = pipe.cfg.for_prompt(captions[0])
    plan = image_plan(h, w, *pipe.grid_ids())
    negative = templates.t2i_negative_prompt(h, w, pipe.tok, pipe.cfg.negative_prompt)
    cond = [templates.t2i_prompt(c, h, w, pipe.tok, positive_suffix=pipe.cfg.positive_suffix) for c in captions]
    plain = [templates.t2i_prompt(c, h, w, pipe.tok, positive_suffix="") for c in captions]  # as pairs hold them
    prefix = fmt.image_prefix(h, w, pipe.tok)

    def sample(rows_, negatives, plans, seed):
        out_ = pipe.generator.generate(rows_, plans, negative_prompts=negatives, guidance=guidance,
                                       sampling=sampling, seed=seed)  # fmt: skip
        return [r[: int(n)].tolist() for r, n in zip(out_.tokens, out_.lengths, strict=True)]

    def scores(i, group):  # one decode for the group (pixels do not depend on the batch)
        images = pipe.decode_images(torch.stack([pipe.parse_vision(prefix, g, fmt.Image) for g in group]))
        return [scene_score(scenes[i], image) for image in images]

    pairs, mixed = [], 0
    for start in range(0, prompts, BATCH):
        idx = list(range(start, min(prompts, start + BATCH)))
        trunks = dict(zip(idx, sample([cond[i] for i in idx], [negative] * len(idx), [plan] * len(idx),
                                      1000 + start), strict=True))  # fmt: skip
        cut = {i: rng.choice(rows) * (w + 1) for i in idx}  # tokens of the trunk every branch keeps
        owner = [i for i in idx for _ in range(branches)]
        grown = sample([cond[i] + trunks[i][: cut[i]] for i in owner], [negative + trunks[i][: cut[i]] for i in owner],
                       [plan[cut[i] :] for i in owner], 5000 + start)  # fmt: skip
        for i in idx:
            group = [trunks[i]] + [trunks[i][: cut[i]] + g for g, o in zip(grown, owner, strict=True) if o == i]
            ranked = ranked_pairs(scores(i, group))
            mixed += bool(ranked)
            for better, worse in ranked:
                for g, kind in ((group[better], "chosen"), (group[worse], "rejected")):
                    pairs.append(_labelled(plain[i] + g, len(plain[i]) + cut[i], kind))
    write_shard(out, "pairs", pairs)
    return {"pairs": len(pairs) // 2, "prompts": prompts, "prompts_with_pairs": mixed}


def truth_pairs(pipe: Pipeline, prompts: int, samples: int, out: Path) -> dict:
    h, w = pipe.latent_size()
    rng = random.Random(9090)
    scenes = [shapes.sample_scene(rng, n_objects=3) for _ in range(prompts)]
    captions = [shapes.caption(s, rng) for s in scenes]
    pairs, wrong_samples = [], 0
    for start in range(0, prompts, BATCH):
        idx = list(range(start, min(prompts, start + BATCH)))
        codes = pipe.text_to_image_codes([captions[i] for i in idx], num_images=samples, seed=3000 + start)
        images = pipe.decode_images(codes)
        truth = pipe.encode_images([shapes.render(scenes[i], pipe.cfg.image_size[0]) for i in idx])
        for j, i in enumerate(idx):
            group = range(j * samples, (j + 1) * samples)
            wrong = [q for q in group if checker.score_image(images[q], scenes[i])["overall"] < 1]
            wrong_samples += len(wrong)
            if wrong:
                keep = len(templates.t2i_prompt(captions[i], h, w, pipe.tok, positive_suffix=""))
                for c, kind in ((truth[j], "chosen"), (codes[wrong[0]], "rejected")):
                    pairs.append(_labelled(templates.caption_then_image(captions[i], c, pipe.tok), keep, kind))
    write_shard(out, "pairs", pairs)
    return {"pairs": len(pairs) // 2, "prompts": prompts, "samples": prompts * samples, "wrong_samples": wrong_samples}


def _swapped(scene: shapes.Scene, rng: random.Random) -> shapes.Scene | None:
    """`scene` with one binding broken, the mistake the model makes: two objects exchange their colours
    or their shapes (whichever differ), or one takes the other's colour. None when the two objects
    picked share colour and shape, or when the change would draw a held-out colour-shape pair."""
    objs = list(scene.objects)
    a, b = rng.sample(range(len(objs)), 2)
    x, y = objs[a], objs[b]
    options = []
    if x.colour != y.colour:
        options += [{a: replace(x, colour=y.colour), b: replace(y, colour=x.colour)}, {a: replace(x, colour=y.colour)}]
    if x.shape != y.shape:
        options.append({a: replace(x, shape=y.shape), b: replace(y, shape=x.shape)})
    if not options:
        return None
    change = rng.choice(options)
    broken = shapes.Scene(tuple(change.get(i, o) for i, o in enumerate(objs)))
    return None if any(shapes.is_held_out(o) for o in broken.objects) else broken


def swap_pairs(pipe: Pipeline, prompts: int, out: Path) -> dict:
    """Hard negatives without sampling: the scene drawn as asked (chosen) and drawn with one binding
    broken (rejected), both encoded by the model's own tokenizer, for scenes of 2-3 objects."""
    h, w = pipe.latent_size()
    rng = random.Random(7070)
    scenes, broken = [], []
    while len(scenes) < prompts:
        scene = shapes.sample_scene(rng, n_objects=rng.choice((2, 3, 3)))
        if (bad := _swapped(scene, rng)) is not None:
            scenes.append(scene)
            broken.append(bad)
    captions = [shapes.caption(s, rng) for s in scenes]
    size = pipe.cfg.image_size[0]
    pairs, differing = [], []
    for start in range(0, prompts, 64):
        idx = range(start, min(prompts, start + 64))
        good = pipe.encode_images([shapes.render(scenes[i], size) for i in idx])
        bad = pipe.encode_images([shapes.render(broken[i], size) for i in idx])
        for j, i in enumerate(idx):
            differing.append(int((good[j] != bad[j]).sum()))
            keep = len(templates.t2i_prompt(captions[i], h, w, pipe.tok, positive_suffix=""))
            for c, kind in ((good[j], "chosen"), (bad[j], "rejected")):
                pairs.append(_labelled(templates.caption_then_image(captions[i], c, pipe.tok), keep, kind))
    write_shard(out, "pairs", pairs)
    return {"pairs": prompts, "differing_codes_mean": sum(differing) / len(differing)}


@torch.inference_mode()
def start_preference(pipe: Pipeline, prefs: Path) -> dict:
    """How the start model already ranks a corpus of pairs: the share whose chosen sequence is the
    likelier, and at the first code where the two differ (the same context before it) the share whose
    chosen code is the likelier, with the mean probabilities of the two codes there."""
    pairs = preference_pairs(list(Corpus(prefs)))
    sequence, first = [], []
    for start in range(0, len(pairs), 16):
        part = pairs[start : start + 16]
        batch = pad([c for c, _ in part] + [r for _, r in part], pipe.tok.special.pad)
        hidden = pipe.decoder.hidden(batch.tokens, batch.input_pos)
        totals = sequence_logps(hidden, pipe.decoder.lm_head.weight, batch.labels)  # as the DPO stage sums them
        for i, (c, r) in enumerate(part):
            sequence.append(bool(totals[i] > totals[len(part) + i]))
            d = next((t for t, (a, b) in enumerate(zip(c.tokens, r.tokens, strict=False)) if a != b), None)
            if d is not None:  # a pair of equal sequences has no first difference
                probs = pipe.decoder.logits(hidden[i, d - 1]).softmax(-1)  # the context both share
                first.append((probs[c.tokens[d]].item(), probs[r.tokens[d]].item()))
    n = len(pairs)
    return {"pairs": n, "sequence_prefers_chosen": sum(sequence) / n,
            "first_difference_prefers_chosen": sum(a > b for a, b in first) / len(first),
            "first_difference_p_chosen": sum(a for a, _ in first) / len(first),
            "first_difference_p_rejected": sum(b for _, b in first) / len(first)}  # fmt: skip


def mistakes(pipe: Pipeline, n: int, seed: int) -> dict:
    """What goes wrong in the model's 3-object scenes (the checker's parse against the scene, per
    object asked for): an empty cell, a colour or shape that belongs to another object of the scene
    (a binding) or to none, the wrong size; and objects drawn in cells that should be empty."""
    rng = random.Random(world.EVAL_SEED_OFFSET + 30_000 + seed)
    scenes = [shapes.sample_scene(rng, n_objects=3) for _ in range(n)]
    prompts = [shapes.caption(s, rng) for s in scenes]
    kinds, wrong = Counter(), 0
    for start in range(0, n, 16):
        for image, scene in zip(pipe.text_to_image(prompts[start : start + 16], seed=seed + start),
                                scenes[start : start + 16], strict=True):  # fmt: skip
            found, want = set(checker.detect(image).objects), set(scene.objects)
            wrong += found != want
            at, at_want = {o.cell: o for o in found}, {o.cell for o in want}
            for o in want - found:
                others = [x for x in scene.objects if x != o]
                if (f := at.get(o.cell)) is None:
                    hits = ["missing (cell empty)"]
                else:
                    changed = [k for k in ("colour", "shape") if getattr(f, k) != getattr(o, k)]
                    hits = [f"{k} of another object" if any(getattr(x, k) == getattr(f, k) for x in others)
                            else f"{k}, not in the scene" for k in changed]  # fmt: skip
                    hits += ["size"] * (f.size != o.size)
                kinds.update(hits)
            kinds["object in a cell that should be empty"] += sum(f.cell not in at_want for f in found)
    return {"scenes": n, "wrong_scenes": wrong, "mistakes": dict(kinds.most_common())}


def train(model: Path, prefs: Path, out: Path, masked: bool) -> Path:
    """train-demo's DPO stage from `model`, in fp32."""
    if not (out / "model" / "config.json").exists():
        cfg = dpo_config(DemoConfig(dpo_mask_shared=masked), model, prefs, out)
        dpo.main(replace(cfg, bf16=False, vq=str(model)))
    return out / "model"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the model to start from (train-demo's gen/model)")
    p.add_argument("--out", default="runs/dpo_pair_sources")
    p.add_argument("--seed", type=int, default=7, help="evaluation seed")
    p.add_argument("--n", type=int, default=1000, help="text-to-image prompts")
    p.add_argument("--branch-prompts", type=int, default=800)
    p.add_argument("--branches", type=int, default=6)
    p.add_argument("--branch-rows", default="3,6", help="code rows a branch may start at (drawn at random)")
    p.add_argument("--truth-prompts", type=int, default=1600)
    p.add_argument("--swap-prompts", type=int, default=2000)
    p.add_argument("--mistakes", type=int, default=320, help="3-object scenes whose mistakes are counted (0: none)")
    p.add_argument("--sources", default="branches,truth", help="which sources to train on")
    p.add_argument("--output", default="benchmarks/results/dpo_pair_sources.json")
    args = p.parse_args()
    model, out, started = Path(args.model), Path(args.out), time.perf_counter()
    rows_at, chosen = tuple(int(r) for r in args.branch_rows.split(",")), args.sources.split(",")
    sources = {}
    makers = {"branches": lambda o: branch_pairs(pipe, args.branch_prompts, args.branches, rows_at, o),
              "truth": lambda o: truth_pairs(pipe, args.truth_prompts, 2, o),
              "swap": lambda o: swap_pairs(pipe, args.swap_prompts, o)}  # fmt: skip
    if unknown := set(chosen) - set(makers):
        p.error(f"unknown sources {sorted(unknown)}; choose from {sorted(makers)}")
    pipe = Pipeline.load(model)
    tag = {
        "branches": "branches_rows" + "-".join(map(str, rows_at)),
        "truth": "truth",
        "swap": f"swap{args.swap_prompts}",
    }  # cached pairs' folders
    for name, make in ((n, makers[n]) for n in chosen):
        folder = out / f"prefs_{tag[name]}"
        if not (folder / "meta.json").exists():
            sources[name] = make(folder)
            print(name, sources[name], flush=True)
        sources.setdefault(name, {"pairs": len(Corpus(folder)) // 2})
        sources[name]["start_preference"] = start_preference(pipe, folder)
        print(name, "start preference:", sources[name]["start_preference"], flush=True)
    cached = out / f"start_seed{args.seed}_n{args.n}.json"  # the start's scores, shared by reruns
    if cached.exists():
        base = json.loads(cached.read_text())
    else:
        base = world.text_to_image(pipe, n=args.n, seed=args.seed)
        out.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({k: base[k] for k in ("overall", "by_objects", "items")}))
    rows = [{"model": "start", "overall": base["overall"], "se": mean_se(base["items"])[1],
             "by_objects": base["by_objects"]}]  # fmt: skip
    if args.mistakes:
        rows[0]["mistakes"] = mistakes(pipe, args.mistakes, args.seed)
    print(f"start: {base['overall']:.4f} {base['by_objects']} {rows[0].get('mistakes', '')}", flush=True)
    variants = (
        ("branches", "branches", False),
        ("truth", "truth", False),
        ("truth, differing tokens", "truth", True),
        ("swap", "swap", False),
        ("swap, differing tokens", "swap", True),
    )
    for name, source, masked in (v for v in variants if v[1] in chosen):
        folder = train(model, out / f"prefs_{tag[source]}", out / (tag[source] + ("_masked" if masked else "")), masked)
        tuned = Pipeline.load(folder)
        r = world.text_to_image(tuned, n=args.n, seed=args.seed)
        d = paired_difference(r["items"], base["items"])
        rows.append({"model": name, "pairs": sources[source]["pairs"], "mask_shared": masked,
                     "overall": r["overall"], "se": mean_se(r["items"])[1], "by_objects": r["by_objects"],
                     "minus_start": d})  # fmt: skip
        if args.mistakes:
            rows[-1]["mistakes"] = mistakes(tuned, args.mistakes, args.seed)
        print(f"{name}: {r['overall']:.4f}, - start {d['difference']:+.4f} (2 SE {2 * d['se']:.4f}) "
              f"{r['by_objects']}", flush=True)  # fmt: skip
    result = {"benchmark": "dpo_pair_sources", "model": str(model), "eval_seed": args.seed, "prompts": args.n,
              "branch_rows": rows_at, "sources": sources, "rows": rows,
              "minutes": round((time.perf_counter() - started) / 60, 1)}  # fmt: skip
    write_result(args.output, result)


if __name__ == "__main__":
    main()
