"""Which dtype to compute in: bf16 where the hardware runs it natively, fp32 elsewhere.

bf16 is the fast path on GPUs and on CPUs with AVX-512 (oneDNN's bf16 kernels; about 5x fp32 with
AVX512-BF16). On a CPU without it (AVX2 only, e.g. most laptops and some cloud EPYCs), torch 2.13
emulates bf16 and it is far slower than fp32: measured on a 2-core AVX2 EPYC, a 1024^3 matmul took
2,688 ms in bf16 against 19 ms in fp32, and a 3x3 convolution 447 ms against 24 ms. So "auto" (the
default of every command) and the recipes' `bf16` switches use bf16 only where it is fast.
"""

from __future__ import annotations

import functools

import torch

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@functools.cache
def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matmuls and convolutions run natively: CUDA devices with bf16, CPUs that oneDNN
    runs bf16 on (AVX-512 and up); other accelerators are assumed to."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN: no fast bf16
            return False
    return True


def compute_dtype(name: str, device: str | torch.device = "cpu") -> torch.dtype:
    """ "bf16" / "fp32" as named, "auto": bf16 where it is fast on `device` (`bf16_is_fast`), else fp32."""
    if name == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]
