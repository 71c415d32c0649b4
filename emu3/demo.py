"""`emu3 demo` and `emu3 eval`: run the demo world's tasks on a model and write reports.

emu3 demo                              # the shipped model, a small sample of each task, under 2 minutes on CPU
emu3 eval --suite all                  # the measured table (JSON + markdown + HTML) on the shipped model
emu3 eval --model sft=runs/demo/sft/model --model dpo=runs/demo/model   # paired comparison of checkpoints

A model folder that holds an understanding model (<folder>/chat, Emu3-Chat beside Emu3-Gen) answers
and captions with it: `emu3 demo` uses it for those tasks, `emu3 eval` adds it as NAME-chat.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

DEMO_SIZES = {"text_to_image": 16, "digits": 10, "digit_recognition": 16, "vqa": 24, "vqa_round_trip": 16,
              "read_drawings": 8, "captioning": 8, "video_extension": 2, "video": 1}  # fmt: skip
# `emu3 eval` sample counts per task, as multiples of --n (text-to-image prompts); 0: the whole split.
EVAL_SHARES = {"text_to_image": 1.0, "text_to_image_no_cfg": 1.0, "compositional": 0.5, "vqa": 1.0, "captioning": 0.4,
               "video_extension": 0.064, "video": 0.032, "digits": 0.4, "digit_recognition": 0,
               "vq_round_trip": 0.4, "vqa_round_trip": 1.0, "vqa_jpeg": 1.0, "read_drawings": 1.0,
               "colour_binding": 1.0}  # fmt: skip


def sampling_overrides(args: argparse.Namespace) -> dict:
    """--guidance / --temperature / --top-k / --min-p given on the command line, checked; the rest stay the
    model's."""
    changes = {k: v for k, v in (("guidance", args.guidance), ("temperature", args.temperature),
                                 ("top_k", args.top_k), ("min_p", args.min_p)) if v is not None}  # fmt: skip
    if changes.get("guidance", 1.0) < 1.0:
        raise SystemExit(f"--guidance {changes['guidance']}: must be >= 1 (1 means no guidance)")
    if changes.get("temperature", 1.0) <= 0:
        raise SystemExit(f"--temperature {changes['temperature']}: must be > 0")
    if changes.get("top_k", 1) < 1:
        raise SystemExit(f"--top-k {changes['top_k']}: must be >= 1")
    if not 0.0 <= changes.get("min_p", 0.0) <= 1.0:
        raise SystemExit(f"--min-p {changes['min_p']}: must be in [0, 1]")
    return changes


def task_kwargs(overrides: dict) -> dict[str, dict]:
    """Tasks' own sampling settings less what the command line overrides: --guidance / --temperature
    apply to every task, the digits' own settings (`world.DIGIT_SAMPLING`) included."""
    from emu3.eval import world

    return {"digits": {"sampling": {k: v for k, v in world.DIGIT_SAMPLING.items() if k not in overrides}}}


def _loader(args: argparse.Namespace, changes: dict):
    """Loads a model folder as a Pipeline, with the sampling `changes` (from `sampling_overrides`)."""
    from emu3.commands import load_pipeline

    def load(folder):
        pipe = load_pipeline(folder, None, args.device, args.dtype)
        # Overridden sampling applies to every prompt, those with a family's own (`prompt_sampling`) too.
        return pipe.with_config(**changes, prompt_sampling=()) if changes else pipe

    return load


def _task_names(args: argparse.Namespace) -> tuple[str, ...]:
    """--tasks (comma-separated, checked) if given, else the --suite's tasks."""
    from emu3.eval import world

    if args.tasks:
        names = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        unknown = [t for t in names if t not in world.TASKS]
        if unknown or not names:
            raise SystemExit(f"--tasks: unknown task(s) {unknown or [args.tasks]}; known: {', '.join(world.TASKS)}")
        return names
    return world.SUITES[args.suite] if args.suite != "all" else tuple(t for s in world.SUITES.values() for t in s)


def run_demo(args: argparse.Namespace) -> int:
    from emu3.commands import default_model_folder
    from emu3.eval import world
    from emu3.eval.report import scores_only, write_report
    from emu3.generate.pipeline import chat_model_folder

    torch.manual_seed(args.seed)
    overrides = sampling_overrides(args)
    load = _loader(args, overrides)
    pipe = load(args.model)
    chat = chat_model_folder(args.model or default_model_folder())
    reader = load(str(chat)) if chat is not None else pipe  # answers and captions: the understanding model
    results, timings = {}, {}
    extra = task_kwargs(overrides)
    for task, n in DEMO_SIZES.items():
        start = time.perf_counter()
        try:
            model = reader if task in world.UNDERSTANDING else pipe
            kwargs = {**extra.get(task, {}), **({"reader": reader} if task == "read_drawings" else {})}
            results[task] = world.TASKS[task](model, n=n, seed=args.seed, **kwargs)
        except ImportError as err:  # e.g. the digits tasks without scikit-learn
            print(f"skipping {task}: {err}")
            continue
        results[task].pop("items", None)
        timings[task] = round(time.perf_counter() - start, 1)
        shown = {
            k: round(v, 3) if isinstance(v, float) else v for k, v in scores_only({task: results[task]})[task].items()
        }
        print(f"{task:18s} {json.dumps(shown)}  ({timings[task]}s)", flush=True)
    notes = [f"model: {args.model or 'shipped demo model'}"
             + (f" (answers and captions: its understanding model, {chat.name}/)" if chat is not None else "")
             + f"; seed {args.seed}; seconds per task: {timings}"
             + (f"; sampling overridden: {overrides}" if overrides else ""),
             "Prompts and scenes use seeds the model was not trained on; `emu3 eval` measures with more."]  # fmt: skip
    path = write_report(results, Path(args.output) / "report.html", title="Emu3 demo world: every task", notes=notes)
    print(f"report: {path.resolve()}")
    return 0


def eval_models(specs: list[str] | None) -> tuple[dict[str, str | None], dict[str, tuple[str, ...]]]:
    """--model [NAME=]FOLDER specs -> (name -> folder, name -> the only tasks it is scored on). A folder
    holding an understanding model (<folder>/chat) adds it right after, as NAME-chat, on the
    understanding tasks (and it answers about NAME's drawings in read_drawings: `eval_readers`)."""
    from emu3.commands import default_model_folder
    from emu3.eval.world import UNDERSTANDING
    from emu3.generate.pipeline import chat_model_folder

    models: dict[str, str | None] = {}
    only: dict[str, tuple[str, ...]] = {}
    for spec in specs or [None]:
        name, _, folder = (spec or "").rpartition("=") if spec and "=" in spec else ("", "", spec)
        name = name or (Path(folder).name if folder else "shipped")
        if name in models:
            raise SystemExit(f"--model: the name {name!r} is given twice; name them, e.g. --model a=FOLDER")
        models[name] = folder
        chat = chat_model_folder(folder or default_model_folder())
        if chat is not None:
            models[f"{name}-chat"], only[f"{name}-chat"] = str(chat), UNDERSTANDING
    return models, only


def eval_readers(models: dict[str, str | None], only: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """name -> the folder of its understanding model, for every model that `eval_models` gave one."""
    return {name: models[f"{name}-chat"] for name in models if f"{name}-chat" in only}


def run_eval(args: argparse.Namespace) -> int:
    from emu3.eval import suite

    models, only = eval_models(args.model)
    names = _task_names(args)
    tasks = {t: max(1, round(args.n * EVAL_SHARES[t])) if EVAL_SHARES[t] else 0 for t in names}
    overrides = sampling_overrides(args)
    summary = suite.evaluate(_loader(args, overrides), models, tasks, seed=args.seed, only=only,
                             task_kwargs=task_kwargs(overrides), readers=eval_readers(models, only))  # fmt: skip
    summary["sampling"] = overrides  # empty: each model's own defaults
    out = suite.write(summary, args.output)
    print(suite.markdown(summary))
    print(f"written: {out.resolve()}/eval.json, eval.md, report.html")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from emu3.eval.world import SUITES

    demo = sub.add_parser("demo", help="run every task on the shipped model and write an HTML report (~2 min)")
    ev = sub.add_parser("eval", help="score the demo world's tasks (JSON + markdown + HTML), comparing models")
    for p, name in ((demo, "demo"), (ev, "eval")):
        p.add_argument("-o", "--output", default=f"emu3-{name}", help="output folder")
        p.add_argument("--device", default="cpu")
        p.add_argument(
            "--dtype",
            default="auto",
            choices=["auto", "bf16", "fp32"],
            help="decoder dtype (default: auto, bf16 where the device runs it fast, else fp32)",
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--guidance",
            type=float,
            default=None,
            help="classifier-free guidance scale for every task (default: the model's own; generated digits: "
            "eval's DIGIT_SAMPLING)",
        )
        p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the model's)")
        p.add_argument("--top-k", type=int, default=None, help="sampling top-k (default: the model's)")
        p.add_argument("--min-p", type=float, default=None,
                       help="min-p on the conditional distribution, 0 = off (default: the model's)")  # fmt: skip
    demo.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
    ev.add_argument("--model", action="append", metavar="[NAME=]FOLDER",
                    help="model folder, repeatable for a paired comparison (default: the shipped model); "
                         "one holding an understanding model (FOLDER/chat) adds it as NAME-chat")  # fmt: skip
    ev.add_argument("--suite", default="all", choices=[*SUITES, "all"], help="which tasks (default: all)")
    ev.add_argument(
        "--tasks",
        default=None,
        help="comma-separated task names instead of --suite, e.g. text_to_image,text_to_image_no_cfg",
    )
    ev.add_argument("--n", type=int, default=500, help="text-to-image prompts; other tasks scale with it")
    demo.set_defaults(func=run_demo)
    ev.set_defaults(func=run_eval)
