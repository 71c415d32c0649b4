"""Bring a `train-demo` run back from a rented GPU machine, which returns a few files of at most 16 MiB.

`pack` (on the GPU machine, after `benchmarks/train_demo_video_gpu.sh`'s run): each finished stage's
decoder in bf16 without its vision tokenizer (the tokenizer was carried there, so it is here already),
with its config, text tokenizer and defaults, as <out>/<stage>.tgz, about 10 MB each.

`unpack` (here): each archive rebuilt as a loadable folder <dest>/<stage>/model with that vision
tokenizer (`Pipeline.load(vq_folder=)` then `Pipeline.save`, as `emu3 pretrain` saves a model), then the
shipped layout in <dest>/model exactly as train-demo exports it (`train_demo._export` of the gen stage,
`export_chat` of the understanding stage), given the run's train-demo config file and overrides.

    python benchmarks/demo_transfer.py pack /tmp/emu3-vdemo/demo $OUT
    python benchmarks/demo_transfer.py unpack runs/vdemo/gpu runs/vqt/tile1/model runs/vdemo \\
        --config configs/train_demo/shipped.yaml -- device=cpu ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

# What the evaluation table and the export need (dpo_r2 under dpo_rounds=2): six archives of about 10 MB
# and the two logs are 8 files and under 64 MiB, what a rented machine returns.
STAGES = ("pretrain", "sft", "dpo", "dpo_r2", "gen", "chat_rt")
VQ_PREFIX = "vqmodel."  # the vision tokenizer's tensors inside a model folder's model.safetensors


def pack(run: Path, out: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file, save_file

    packed = []
    for stage in STAGES:
        model = run / stage / "model"
        if not (model / "config.json").exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            state = load_file(model / "model.safetensors")
            decoder = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
                       for k, v in state.items() if not k.startswith(VQ_PREFIX)}  # fmt: skip
            save_file(decoder, Path(tmp) / "model.safetensors")
            for f in model.glob("*.json"):
                shutil.copy(f, tmp)
            with tarfile.open(out / f"{stage}.tgz", "w:gz") as tar:
                tar.add(tmp, arcname=".")
        packed.append(stage)
    log = run / "model" / "training_log.json"
    if log.exists():
        shutil.copy(log, out / "training_log.json")
    return packed


def unpack(archives: Path, vq: Path, dest: Path, overrides: list[str], config: Path | None = None) -> None:
    import torch

    from emu3.configuration import load
    from emu3.generate.pipeline import Pipeline
    from emu3.recipes import train_demo

    for stage in STAGES:
        archive = archives / f"{stage}.tgz"
        if not archive.exists():
            print(f"{stage}: no archive")
            continue
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
            pipe = Pipeline.load(tmp, vq_folder=vq, dtype=torch.float32)
            folder = pipe.save(dest / stage / "model")
            for f in Path(tmp).glob("emu3_pipeline.json"):  # the stage's own defaults, as trained
                shutil.copy(f, folder)
        print(f"{stage}: {folder}")
    cfg = load(train_demo.DemoConfig, config, [f"out={dest}", *overrides])
    final = dest / "model"
    if (dest / "gen" / "model").exists():
        train_demo._export(dest / "gen" / "model", final, cfg)
        if (dest / "chat_rt" / "model").exists():
            train_demo.export_chat(dest / "chat_rt" / "model", final, cfg)
        if (archives / "training_log.json").exists():
            log = json.loads((archives / "training_log.json").read_text())
            note = "trained on a GPU, rebuilt here by benchmarks/demo_transfer.py"
            log["stages"] = {**log.get("stages", {}), "transfer": note}
            (final / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
        print(f"exported {final}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("run", type=Path, help="train-demo's out folder")
    a.add_argument("out", type=Path)
    b = sub.add_parser("unpack")
    b.add_argument("archives", type=Path, help="the folder holding the <stage>.tgz files")
    b.add_argument("vq", type=Path, help="the vision tokenizer the run was trained with")
    b.add_argument("dest", type=Path)
    b.add_argument("--config", type=Path, default=None, help="the run's train-demo config file, if it had one")
    b.add_argument("overrides", nargs="*", help="the run's train-demo overrides (after --)")
    args = p.parse_args()
    if args.cmd == "pack":
        args.out.mkdir(parents=True, exist_ok=True)
        print("packed", pack(args.run, args.out))
    else:
        unpack(args.archives, args.vq, args.dest, args.overrides, args.config)


if __name__ == "__main__":
    main()
