"""Metrics to stdout and a JSONL file (rank 0 only), and a PNG of the curves at the end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


class MetricLogger:
    def __init__(self, path: str | Path | None, *, enabled: bool = True, every: int = 10) -> None:
        self.path = Path(path) if path else None
        self.enabled, self.every = enabled, every
        self.rows: list[dict[str, Any]] = []
        if self.enabled and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, **values: float) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        self.rows.append(row)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if step % self.every == 0:
            text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            print(text, file=sys.stderr, flush=True)

    def plot(self, path: str | Path, keys: tuple[str, ...] = ("loss", "text_loss", "vision_loss")) -> Path | None:
        """A PNG of the logged curves; skipped (None) when matplotlib is not installed."""
        if not self.enabled or not self.rows:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("note: install matplotlib (emu3[train]) for a plot of the training curves", file=sys.stderr)
            return None
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            points = [(r["step"], r[key]) for r in self.rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points, strict=True), label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return Path(path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def progress_bar(total: int, done: int = 0, *, enabled: bool = True):
    """A tqdm bar over optimiser steps (on stderr; a no-op bar when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
