"""A self-contained HTML report of evaluation results: score tables plus the examples themselves
(images and GIFs embedded as base64, so the file can be mailed or opened anywhere)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f4f4f4; } .grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 150px; font-size: .8em; } figure img { width: 128px; height: 128px;
image-rendering: pixelated; border: 1px solid #ccc; } .muted { color: #777; font-size: .9em; }
"""


def png_data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gif_data_uri(frames: np.ndarray, fps: int = 6) -> str:
    buf = io.BytesIO()
    pics = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=int(1000 / fps), loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(media: np.ndarray, caption: str) -> str:
    uri = gif_data_uri(media) if media.ndim == 4 else png_data_uri(media)
    return f'<figure><img src="{uri}" alt=""><figcaption>{html.escape(caption)}</figcaption></figure>'


def _table(scores: dict[str, Any]) -> str:
    rows = []
    for key, value in scores.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.3f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _examples(task: str, examples: list) -> str:
    figures = []
    for ex in examples:
        if len(ex) == 4:  # (image, question, answer, truth): the questions of vqa, its variants, read_drawings
            image, question, said, answer = ex
            figures.append(_figure(image, f"Q: {question} A: {said} (truth: {answer})"))
        else:  # (text, media) or (media, text)
            text, media = ex if isinstance(ex[0], str) else ex[::-1]
            figures.append(_figure(media, text))
    return '<div class="grid">' + "".join(figures) + "</div>"


def scores_only(results: dict[str, dict]) -> dict[str, dict]:
    """The numbers of a results dict (examples dropped), JSON-ready."""
    return {task: {k: v for k, v in r.items() if k != "examples"} for task, r in results.items()}


def write_report(results: dict[str, dict], path: str | Path, *, title: str, notes: list[str] = ()) -> Path:
    """Write the HTML report and a JSON file of the scores next to it; returns the HTML path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>"]  # fmt: skip
    parts += [f"<p class='muted'>{html.escape(n)}</p>" for n in notes]
    for task, result in results.items():
        parts.append(f"<h2>{html.escape(task.replace('_', ' '))}</h2>")
        parts.append(_table({k: v for k, v in result.items() if k != "examples"}))
        if result.get("examples"):
            parts.append(_examples(task, result["examples"]))
    path.write_text("\n".join(parts) + "\n")
    path.with_suffix(".json").write_text(json.dumps(scores_only(results), indent=2) + "\n")
    return path
