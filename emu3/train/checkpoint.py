"""Atomic training checkpoints with exact resume, in safetensors + JSON only (nothing is pickled).

A checkpoint is a folder `step_000120/` holding
    model.safetensors        the model's state dict under our names
    optimizer.safetensors    every tensor of the optimiser state (`state.<param index>.<name>`)
    state.json               step, optimiser param groups and scalars, data position, config, extras
    rng.safetensors          torch's CPU RNG state and any named torch.Generator states
It is written into a temporary folder and renamed into place, so a crash never leaves half of one;
`latest` in the run folder names the newest complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class TrainState:
    step: int = 0
    position: int = 0  # examples consumed by the data stream
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    run_dir: str | Path,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    *,
    config: dict[str, Any] | None = None,
    generators: dict[str, torch.Generator] | None = None,
    keep: int = 2,
) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"step_{state.step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".tmp_"))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, tmp / "model.safetensors")
        opt = optimizer.state_dict()
        tensors, scalars = {}, {}
        for idx, values in opt["state"].items():
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"state.{idx}.{name}"] = value.detach().contiguous().cpu()
                else:
                    scalars[f"{idx}.{name}"] = value
        save_file(tensors, tmp / "optimizer.safetensors")
        rng = {"torch": torch.get_rng_state()}
        rng.update({f"gen.{k}": g.get_state() for k, g in (generators or {}).items()})
        save_file(rng, tmp / "rng.safetensors")
        meta = {"step": state.step, "position": state.position, "extra": state.extra,
                "param_groups": opt["param_groups"], "optimizer_scalars": scalars, "config": config}  # fmt: skip
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    _write_latest(run_dir, final.name)
    for old in sorted(run_dir.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def _write_latest(run_dir: Path, name: str) -> None:
    tmp = run_dir / "latest.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, run_dir / "latest")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / "latest"
    if not pointer.is_file():
        return None
    path = Path(run_dir) / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> TrainState:  # fmt: skip
    """Restore model (strictly), optimiser and RNG states; returns the step / data position."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"), strict=True)
    if optimizer is not None:
        tensors = load_file(path / "optimizer.safetensors")
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
        for key, value in meta["optimizer_scalars"].items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng = load_file(path / "rng.safetensors")
    torch.set_rng_state(rng["torch"])
    for name, gen in (generators or {}).items():
        gen.set_state(rng[f"gen.{name}"])
    return TrainState(step=meta["step"], position=meta["position"], extra=meta.get("extra") or {})
