"""Turning logits into token ids: temperature, top-k, top-p, min-p and a seedable, sync-free sampler.

min-p keeps the tokens whose probability is at least `min_p` times the most likely token's (Nguyen
et al. 2024, "min-p sampling"). Under classifier-free guidance it is measured on the *conditional*
distribution, not the guided one: that is contrastive decoding's plausibility constraint (Li et al.
2023), and it matters for guidance. Guidance multiplies the ratio p_cond / p_uncond by itself `g - 1`
times, so a token both streams think nearly impossible, but the unconditional one a little more so,
can come out on top; on the demo model at guidance 3, such tokens draw stray strokes into empty cells
(docs/history.md, "Strong guidance"). Filtering on the conditional probabilities first leaves guidance to choose
among tokens the prompt itself finds plausible, and with guidance off it is plain min-p.

Sampling uses the exponential-race form of the categorical draw (argmax of p / E with E ~ Exp(1)),
which needs no host round trip (unlike `torch.multinomial` on some back-ends) and draws from an
explicit `torch.Generator`, so the same seed gives the same tokens.

Shapes: B rows, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 means greedy (argmax)
    top_k: int = 0  # 0 disables
    top_p: float = 1.0  # 1.0 disables
    # Keep tokens at least this fraction as likely as the most likely one, under the conditional
    # distribution at temperature 1 (before guidance, temperature, top-k and top-p); 0 disables.
    min_p: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def overlay(base: SamplingConfig, **changes: float | int | None) -> SamplingConfig:
    """`base` with each of `changes` that is not None (settings a caller may or may not give)."""
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def filter_top_k(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits per row (ties at the threshold are kept), -inf elsewhere."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    threshold = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < threshold, float("-inf"))


def filter_top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of tokens whose probability mass reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cumulative - sorted_logits.softmax(-1) >= p  # mass before this token already reaches p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_min_p(logits: Tensor, reference: Tensor, p: float) -> Tensor:
    """-inf where `reference`'s probability is below p times its row's largest (both (B, V)).

    The reference's most likely token always stays, so a row keeps at least one token wherever the
    reference and the logits allow the same tokens (as guided and conditional logits do)."""
    if p <= 0.0:
        return logits
    ref = reference.float().log_softmax(-1)
    return logits.masked_fill(ref < ref.max(-1, keepdim=True).values + math.log(p), float("-inf"))


def sample(
    logits: Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None, reference: Tensor | None = None
) -> Tensor:
    """(B, V) logits -> (B,) token ids. Rows whose logits are all -inf are a caller bug.

    `reference`: the (B, V) distribution min-p is measured on, the conditional logits under guidance
    (default: `logits` themselves)."""
    logits = filter_min_p(logits.float(), logits if reference is None else reference, cfg.min_p)
    if cfg.greedy:
        return logits.argmax(-1)
    logits = filter_top_p(filter_top_k(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    probs = logits.softmax(-1)
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(-1)
