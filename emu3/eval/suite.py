"""`emu3 eval`: run a suite of demo-world tasks on one or more models and write the measured table.

Several models (e.g. the pretrain, SFT and DPO checkpoints of one run) are scored on the same prompts
and seeds, so their differences are paired; guidance on vs off is paired the same way. Output:
`eval.json` (every number, per-item scores included), `eval.md` (the table) and `report.html`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from emu3.eval import world
from emu3.eval.stats import mean_se, paired_difference


def evaluate(
    load: Callable[[str | None], object], models: dict[str, str | None], tasks: dict[str, int], *, seed: int = 0,
    log: Callable[[str], None] = print, only: dict[str, tuple[str, ...]] | None = None,
    task_kwargs: dict[str, dict] | None = None, readers: dict[str, str] | None = None,
) -> dict:  # fmt: skip
    """Scores of every task (name -> n) for every model (name -> folder); `load(folder)` gives a Pipeline.
    `only` limits some models to some tasks (e.g. an understanding model to the understanding tasks);
    `task_kwargs` gives some tasks more arguments (e.g. {"digits": {"sampling": {}}}); `readers` names,
    for some models, the folder of the model that answers about their drawings in `read_drawings`
    (their understanding model) instead of themselves."""
    results: dict[str, dict] = {}
    for name, folder in models.items():
        mine = {t: n for t, n in tasks.items() if t in (only or {}).get(name, tasks)}
        if not mine:
            continue
        pipe = load(folder)
        results[name] = {}
        for task, n in mine.items():
            start = time.perf_counter()
            kwargs = dict((task_kwargs or {}).get(task, {}))
            if task == "read_drawings" and name in (readers or {}):
                kwargs["reader"] = load(readers[name])
            try:
                r = world.TASKS[task](pipe, n=n, seed=seed, **kwargs)
            except ImportError as err:  # e.g. the digits tasks without scikit-learn
                log(f"skipping {task}: {err}")
                continue
            r["seconds"] = round(time.perf_counter() - start, 1)
            results[name][task] = r
            key, _ = world.HEADLINE[task]
            mean, se = mean_se(r["items"])
            log(f"{name:8s} {task:22s} {key} {mean:.3f} +- {se:.3f}  (n={len(r['items'])}, {r['seconds']}s)"
                + "".join(f"; {text}" for text in references(r)))  # fmt: skip
    return {"models": {k: str(v) if v else "shipped" for k, v in models.items()}, "seed": seed,
            "results": results, "comparisons": comparisons(results)}  # fmt: skip


def comparisons(results: dict[str, dict]) -> list[dict]:
    """Paired differences: guidance on - off for each model, and each model - the one before it."""
    out = []
    for name, r in results.items():
        if "text_to_image" in r and "text_to_image_no_cfg" in r:
            d = paired_difference(r["text_to_image"]["items"], r["text_to_image_no_cfg"]["items"])
            out.append({"what": f"{name}: CFG - no CFG", "task": "text_to_image", **d})
    names = list(results)
    for before, after in zip(names, names[1:], strict=False):
        for task in ("text_to_image", "compositional", "digits", *world.UNDERSTANDING):
            if task in results[before] and task in results[after]:
                d = paired_difference(results[after][task]["items"], results[before][task]["items"])
                out.append({"what": f"{after} - {before}", "task": task, **d})
    return out


def references(result: dict) -> list[str]:
    """What a task's score is measured against, where it reports it: for video extension, repeating the
    last given frame, and the true clip through the vision tokenizer (the best any decoder can do)."""
    out = []
    if "frozen_baseline_px" in result:
        out.append(f"repeating the last frame {result['frozen_baseline_px']:.1f} px")
    if "tokenizer_floor_px" in result:
        out.append(f"true clip through the tokenizer {result['tokenizer_floor_px']:.1f} px "
                   f"(object found in {result['tokenizer_found']:.0%} of frames)")  # fmt: skip
    return out


def markdown(summary: dict) -> str:
    results = summary["results"]
    names = list(results)
    tasks = [t for t in world.TASKS if any(t in r for r in results.values())]
    lines = ["| task | metric | " + " | ".join(names) + " | n |", "|---" * (len(names) + 3) + "|"]
    for task in tasks:
        key, higher = world.HEADLINE[task]
        cells, n = [], 0
        for name in names:
            r = results[name].get(task)
            if r is None:
                cells.append("-")
                continue
            mean, se = mean_se(r["items"])
            n = len(r["items"])
            cells.append(f"{mean:.3f} ± {se:.3f}")
        lines.append(f"| {task} | {key} ({'higher' if higher else 'lower'} is better) | " + " | ".join(cells)
                     + f" | {n} |")  # fmt: skip
    notes = [f"- {name}, {task}: " + "; ".join(references(r)) for name, by_task in results.items()
             for task, r in by_task.items() if references(r)]  # fmt: skip
    if notes:
        lines += ["", "Measured against:", *notes]
    if summary.get("sampling"):
        lines += ["", "Sampling for every model, overriding its own defaults: "
                  + ", ".join(f"{k} {v}" for k, v in summary["sampling"].items())]  # fmt: skip
    if summary["comparisons"]:
        lines += ["", "| comparison | task | difference | 2 x SE | beyond 2 SE |", "|---|---|---|---|---|"]
        for c in summary["comparisons"]:
            beyond = "higher" if c["significant"] else "lower" if c.get("significantly_lower") else "no"
            lines.append(f"| {c['what']} | {c['task']} | {c['difference']:+.3f} | {2 * c['se']:.3f} | {beyond} |")
    return "\n".join(lines) + "\n"


def write(summary: dict, out: str | Path) -> Path:
    """eval.json, eval.md and report.html (with examples of the last model) in `out`."""
    from emu3.eval.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plain = {**summary, "results": {m: {t: {k: v for k, v in r.items() if k != "examples"} for t, r in tasks.items()}
                                    for m, tasks in summary["results"].items()}}  # fmt: skip
    (out / "eval.json").write_text(json.dumps(plain, indent=1) + "\n")
    (out / "eval.md").write_text(markdown(summary))
    last = list(summary["results"])[-1]
    shown = {t: {k: v for k, v in r.items() if k != "items"} for t, r in summary["results"][last].items()}
    write_report(shown, out / "report.html", title=f"Emu3 demo world evaluation ({last})",
                 notes=[f"models: {summary['models']}; seed {summary['seed']}"])  # fmt: skip
    return out
