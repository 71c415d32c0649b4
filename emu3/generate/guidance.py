"""Classifier-free guidance on a batch laid out as [conditional rows; unconditional rows].

The official Emu3 code runs the unconditional (negative-prompt) stream as a second model call with
its own cache every step; here both streams are rows of one batch and one forward. The combination
is the official one (transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor): on
log-probabilities, `uncond + g * (cond - uncond)`; g == 1 gives the conditional distribution.

Shapes: B requests, V vocab.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Schedule = Literal["constant", "linear"]


def cfg_logits(logits: Tensor, scale: Tensor | float) -> Tensor:
    """(2B, V) logits of [cond; uncond] -> (B, V) guided log-probabilities; `scale` scalar or (B,)."""
    cond, uncond = logits.float().log_softmax(-1).chunk(2, dim=0)
    if isinstance(scale, Tensor):
        scale = scale.to(cond.dtype)[:, None]
    return uncond + scale * (cond - uncond)


def scheduled_scale(scale: Tensor, progress: Tensor, schedule: Schedule) -> Tensor:
    """Guidance per row at a given progress in [0, 1] through the row's image.

    "constant" keeps `scale`; "linear" ramps from 1 (no guidance) at the first token to `scale` at
    the last, a common way to keep early structure diverse. The batch stays doubled either way, so the
    step has one static shape."""
    if schedule == "constant":
        return scale
    if schedule == "linear":
        return 1.0 + (scale - 1.0) * progress.clamp(0, 1)
    raise ValueError(f"unknown guidance schedule {schedule!r}; use 'constant' or 'linear'")


def doubled_rows(index: Tensor) -> Tensor:
    """Row index (B,) of a [cond; uncond] batch -> (2B,) (e.g. to copy a prefilled cache per sample)."""
    return torch.cat([index, index + index.numel()])
