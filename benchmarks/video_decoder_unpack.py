"""Rebuild a loadable model folder from `video_decoder_gpu.sh`'s model.tgz and the tokenizer it was
trained with: the decoder (stored in bf16, loaded in fp32) and that vision tokenizer, saved together
by `Pipeline.save` as `emu3 pretrain` saves a model.

    python benchmarks/video_decoder_unpack.py runs/vdec/model.tgz runs/vqm/clips4/model runs/vdec/model
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile

import torch

from emu3.generate.pipeline import Pipeline


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("archive")
    p.add_argument("vq", help="the vision tokenizer folder the decoder was trained with")
    p.add_argument("out")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(a.archive) as tar:
        tar.extractall(tmp, filter="data")
        pipe = Pipeline.load(tmp, vq_folder=a.vq, dtype=torch.float32)
    print(f"wrote {pipe.save(a.out)}")


if __name__ == "__main__":
    main()
