"""Writing a benchmark's result: one JSON file, its folder made, its path printed."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(path: str | Path, result: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {path}")
