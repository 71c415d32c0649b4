"""Reading and writing folders of safetensors files (single file or sharded with an index), strictly.

Only safetensors is ever read: a folder holding just `*.bin` / `*.pt` files is refused, because
unpickling a user's file can run arbitrary code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as asked: the message names the file or key."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"missing {path}") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err


def shard_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    index = folder / INDEX_NAME
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map")
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(f"{index} names shard(s) that are not in the folder: {', '.join(missing)}")
        return [folder / n for n in names]
    single = folder / SINGLE_NAME
    if single.is_file():
        return [single]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"})
    if pickles:
        raise CheckpointError(
            f"{folder} holds only pickle weights ({', '.join(pickles[:3])}); emu3 reads safetensors only, "
            "because unpickling can run arbitrary code. Convert them with a trusted tool first."
        )
    raise CheckpointError(f"no safetensors weights in {folder}")


def list_keys(folder: str | Path) -> dict[str, Path]:
    """Every tensor name in the folder -> the file that holds it (reads headers only)."""
    where: dict[str, Path] = {}
    for path in shard_files(folder):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if key in where:
                    raise CheckpointError(f"tensor {key!r} appears in both {where[key].name} and {path.name}")
                where[key] = path
    return where


def iter_tensors(
    folder: str | Path, keep: Callable[[str], bool] = lambda _: True
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) one at a time, shard by shard, so that at most one tensor is loaded beyond
    what the caller keeps. Names for which `keep` is False are never read."""
    for path in shard_files(folder):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if keep(key):
                    yield key, f.get_tensor(key)


def save_tensors_atomic(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None):
    """Write one safetensors file via a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(contiguous, tmp, metadata=metadata or {"format": "pt"})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def check_state_dict(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], *, source: str) -> None:
    """Strict comparison of parameter names and shapes with a readable diff."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint {source} does not fit the model:"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        extra = ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        lines.append(f"  unexpected ({len(unexpected)}): " + extra)
    for k in mismatched[:8]:
        lines.append(f"  shape of {k}: checkpoint {tuple(found[k])} vs model {tuple(expected[k])}")
    raise CheckpointError("\n".join(lines))
