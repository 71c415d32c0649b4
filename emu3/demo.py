"""`emu3 demo` and `emu3 eval`: run every task of the demo world on a model and write an HTML report.

emu3 demo                 # the shipped model, a small sample of each task, under 2 minutes on CPU
emu3 eval --n 64          # the same tasks with more samples, for the README's table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def run(args: argparse.Namespace, *, sizes: dict[str, int]) -> int:
    from emu3.commands import load_pipeline
    from emu3.eval import world
    from emu3.eval.report import scores_only, write_report

    torch.manual_seed(args.seed)
    pipe = load_pipeline(args.model, None, args.device, args.dtype)
    results, timings = {}, {}
    for task, n in sizes.items():
        if n <= 0:
            continue
        start = time.perf_counter()
        try:
            results[task] = world.TASKS[task](pipe, n=n, seed=args.seed)
        except ImportError as err:  # e.g. the digits task without scikit-learn
            print(f"skipping {task}: {err}")
            continue
        timings[task] = round(time.perf_counter() - start, 1)
        shown = {
            k: (round(v, 3) if isinstance(v, float) else v) for k, v in scores_only({task: results[task]})[task].items()
        }
        print(f"{task:16s} {json.dumps(shown)}  ({timings[task]}s)", flush=True)
    out = Path(args.output)
    notes = [f"model: {args.model or 'shipped demo model'}; seed {args.seed}; seconds per task: {timings}",
             "Prompts and scenes are drawn from seeds the model was not trained on."]  # fmt: skip
    path = write_report(results, out / "report.html", title="Emu3 demo world: every task, scored", notes=notes)
    print(f"report: {path.resolve()}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, text, default_n in (("demo", "run every task on the shipped model and write an HTML report", None),
                                  ("eval", "score every task of the demo world with more samples", 48)):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
        p.add_argument("-o", "--output", default=f"emu3-{name}", help="folder for report.html and report.json")
        p.add_argument("--device", default="cpu")
        p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
        p.add_argument("--seed", type=int, default=0)
        if default_n is not None:
            p.add_argument("--n", type=int, default=default_n, help="samples per task")
        p.set_defaults(func=_demo if name == "demo" else _eval)


DEMO_SIZES = {"text_to_image": 16, "digits": 10, "vqa": 20, "captioning": 8, "video": 2, "video_extension": 2}


def _demo(args: argparse.Namespace) -> int:
    return run(args, sizes=DEMO_SIZES)


def _eval(args: argparse.Namespace) -> int:
    n = args.n
    sizes = {"text_to_image": n, "digits": max(10, n // 2), "vqa": n, "captioning": n // 2, "video": max(2, n // 8),
             "video_extension": max(2, n // 8)}  # fmt: skip
    return run(args, sizes=sizes)
