"""Rebuild a loadable model folder from `video_decoder_gpu.sh`'s model.tgz and the tokenizer it was
trained with: the decoder's weights (bf16, widened back to fp32) joined with the vision tokenizer's, as
`emu3 pretrain` saved them.

    python benchmarks/video_decoder_unpack.py runs/vdec/model.tgz runs/vqm/clips4/model runs/vdec/model
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("archive")
    p.add_argument("vq", help="the vision tokenizer folder the decoder was trained with")
    p.add_argument("out")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(a.archive) as tar:
        tar.extractall(tmp, filter="data")
        state = {k: v.float() for k, v in load_file(Path(tmp) / "decoder_bf16.safetensors").items()}
        for f in Path(tmp).glob("*.json"):
            (out / f.name).write_text(f.read_text())
    state |= {f"vqmodel.{k}": v for k, v in load_file(Path(a.vq) / "model.safetensors").items()}
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    print(f"wrote {out}: {len(state)} tensors")


if __name__ == "__main__":
    main()
