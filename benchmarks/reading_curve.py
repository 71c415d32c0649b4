"""How train-demo's reading stage teaches a pretrained decoder to bind colours to shapes, step by step.

    PYTHONPATH=. python benchmarks/reading_curve.py RUN [--steps 300] [--lr 1e-3] [--every 50] [--n 100]
                                                [--kinds qa] [--seed 0] [--output FILE]

RUN is a train-demo folder holding tokenizer/, tokens/, vq/ and pretrain/model (e.g. a run whose reading
check failed). The stage's training (`train_demo.reading_config`: the question conversations alone, from
the pretrained model, at the pretraining learning rate) runs again into RUN/reading_curve/, and every
`--every` steps the live decoder answers emu3 eval's `colour_binding` questions (n held-out two-object
scenes, seed 0; 0.5 / 0.5 is guessing). The decoder is evaluated in fp32 weights under the stage's bf16
autocast, as it trains. Writes benchmarks/results/reading_curve.json (or --output).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.results_file import write_result
from emu3.convert.vq import load_vision_tokenizer
from emu3.eval.world import colour_binding
from emu3.generate.pipeline import Pipeline
from emu3.recipes import pretrain, train_demo
from emu3.recipes.common import autocast
from emu3.tokens.text import load_text_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--kinds", default="qa", help="comma-separated corpus kinds to train on")
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (the stage's data order and start)")
    ap.add_argument("--output", default="benchmarks/results/reading_curve.json")
    args = ap.parse_args()
    run = args.run
    for part in ("tokenizer", "tokens", "vq/model", "pretrain/model"):
        if not (run / part).exists():
            raise SystemExit(f"{run} has no {part}: expected a train-demo folder trained up to pretraining")
    cfg = train_demo.DemoConfig(out=str(run), pretrain_lr=args.lr, reading_steps=args.steps, seed=args.seed)
    base = train_demo.pretrain_config(cfg, run, run / "tokenizer", run / "vq", run / "tokens")
    stage = replace(train_demo.reading_config(base, cfg), out=str(run / "reading_curve"), save_every=args.every,
                    data=replace(base.data, kinds=tuple(args.kinds.split(","))))  # fmt: skip
    defaults = train_demo.pipeline_defaults(cfg, fine_tuned=False)
    vq, tok = load_vision_tokenizer(run / "vq" / "model"), load_text_tokenizer(run / "tokenizer")
    curve, live = [], []

    def probe(step: int) -> None:
        model = copy.deepcopy(live[0]).eval()
        with autocast(stage.bf16, stage.device):
            r = colour_binding(Pipeline(model, vq, tok, defaults), n=args.n, seed=0)
        curve.append({"step": step, "colour_binding": r["accuracy"], "other_colour": r["other"]})
        print(curve[-1], flush=True)

    # The training loop has no callback: the probe rides on its checkpoint writes and model set-up.
    save, build = pretrain.save_checkpoint, pretrain.model_for

    def save_and_probe(run_dir, state_dict, optimizer, state, **kw):
        written = save(run_dir, state_dict, optimizer, state, **kw)
        probe(state.step)
        return written

    def build_and_probe(c, t):
        model = build(c, t)
        if not live:
            live.append(model)
            probe(0)
        return model

    pretrain.save_checkpoint, pretrain.model_for = save_and_probe, build_and_probe
    started = time.perf_counter()
    try:
        pretrain.main(stage)
    finally:
        pretrain.save_checkpoint, pretrain.model_for = save, build
    write_result(args.output, {
        "run": str(run), "steps": args.steps, "lr": args.lr, "kinds": args.kinds, "n": args.n, "seed": args.seed,
        "batch_size": stage.data.batch_size, "seconds": round(time.perf_counter() - started, 1), "curve": curve,
    })  # fmt: skip


if __name__ == "__main__":
    main()
