"""Grammar constraints as precomputed per-position plans instead of per-token Python callbacks.

A plan is a LongTensor with one entry per token to generate: an entry >= 0 forces that token id;
a negative entry names the set of ids the sampler may choose from (VISUAL for image bodies, TEXT
for answers, FREE for anything). The decode loop does one gather per step.

The image plan reproduces the official prefix constraint (spec 4.1): after IMG, every (W+1)-th
token is EOL, the other positions are visual tokens, then EOF, EOI and EOS are forced.

Shapes: B rows, L plan length, V vocab, K token sets.
"""

from __future__ import annotations

import torch
from torch import Tensor

FREE, VISUAL, TEXT = -1, -2, -3
N_SETS = 3


def token_set_masks(vocab_size: int, visual_start: int, codebook_size: int, pad_id: int | None) -> Tensor:
    """(K, V) bool: row k says which ids set -(k+1) allows. The pad id is never sampled."""
    masks = torch.ones(N_SETS, vocab_size, dtype=torch.bool)
    visual = torch.zeros(vocab_size, dtype=torch.bool)
    visual[visual_start : visual_start + codebook_size] = True
    masks[-VISUAL - 1] = visual
    masks[-TEXT - 1] = ~visual
    if pad_id is not None:
        masks[:, pad_id] = False
    return masks


def image_plan(height: int, width: int, eol: int, eof: int, eoi: int, eos: int) -> Tensor:
    """Plan for the tokens after IMG of one h x w image: rows of visual tokens + EOL, then EOF EOI EOS."""
    return video_plan(1, height, width, eol, eof, eoi, eos)


def video_plan(frames: int, height: int, width: int, eol: int, eof: int, eoi: int, eos: int) -> Tensor:
    """Plan for `frames` latent frames, each h rows of (w visual + EOL) closed by EOF; then EOI, EOS."""
    if min(frames, height, width) <= 0:
        raise ValueError(f"grid must be positive, got {frames}x{height}x{width}")
    row = torch.full((width + 1,), VISUAL, dtype=torch.long)
    row[-1] = eol
    frame = torch.cat([row.repeat(height), torch.tensor([eof])])
    return torch.cat([frame.repeat(frames), torch.tensor([eoi, eos])])


def text_plan(max_new_tokens: int) -> Tensor:
    """Free text without visual tokens, up to `max_new_tokens` (the loop stops rows at EOS)."""
    return torch.full((max_new_tokens,), TEXT, dtype=torch.long)


def stack_plans(plans: list[Tensor], pad_id: int) -> Tensor:
    """(B, Lmax): plans of different lengths, each padded at the end by forcing `pad_id`."""
    length = max(p.numel() for p in plans)
    out = torch.full((len(plans), length), pad_id, dtype=torch.long)
    for i, p in enumerate(plans):
        out[i, : p.numel()] = p
    return out


def constrain(logits: Tensor, step_plan: Tensor, masks: Tensor) -> Tensor:
    """Mask (B, V) logits to the set each row's plan entry (B,) allows; forced rows are left as they are."""
    set_index = (-step_plan - 1).clamp(0, masks.shape[0] - 1)  # (B,)
    allowed = masks[set_index]  # (B, V)
    return logits.masked_fill(~allowed, float("-inf"))


def choose(step_plan: Tensor, sampled: Tensor) -> Tensor:
    """The token each row takes: forced ids win over sampled ones."""
    return torch.where(step_plan >= 0, step_plan, sampled)
