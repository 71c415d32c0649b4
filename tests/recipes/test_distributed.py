"""The pretraining recipe under torchrun with 2 CPU processes (gloo): FSDP2 and DDP give the
single-process losses on the same global batches, and the exported model loads."""

import json
import os
import subprocess
import sys

import pytest

from emu3.convert.decoder import load_decoder


def _run(world, out, nproc, dist):
    args = [
        "configs/pretrain/tiny.yaml", f"tokenizer={world / 'tok'}", f"data.corpus={world / 'corpus'}", f"out={out}",
        "data.seq_len=192", "steps=4", "bf16=false", "threads=1", "resume=false", f"dist={dist}", "log_every=1000",
    ]  # fmt: skip
    if nproc == 1:
        cmd = [sys.executable, "-m", "emu3", "pretrain", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
               "-m", "emu3", "pretrain", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("dist", ["fsdp", "ddp"])
def test_two_processes_match_one(world, tmp_path, dist):
    single = _run(world, tmp_path / "one", 1, "none")
    double = _run(world, tmp_path / "two", 2, dist)
    assert len(double) == 4
    for a, b in zip(single, double, strict=True):
        assert abs(a - b) < 2e-3 * max(1.0, abs(a))
    assert load_decoder(tmp_path / "two" / "model").cfg.n_layers == 2
