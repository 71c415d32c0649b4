"""Training losses as pure functions of hidden states, the output projection and labels.

Labels are aligned with tokens (labels[t] is the id at position t, or IGNORE); the functions do
the one-step shift. Cross-entropy goes through `linear_cross_entropy` (linear_ce.py), which works on
cache-sized chunks of rows, so a (B, T, V) fp32 logit tensor for a 184k vocabulary never exists.

The paper weights vision-token losses by 0.5 (spec 5.2). The weighting is a weighted mean,
sum(w * ce) / sum(w), as UniVLA's `CrossEntropyLoss(weight=...)` does.

Shapes: B batch, T tokens, D dim, V vocab, N rows (flattened B*T).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from emu3.train.linear_ce import IGNORE, linear_cross_entropy

TEXT, VISION, ACTION = 0, 1, 2  # loss-weight classes


@dataclass(frozen=True)
class LossWeights:
    text: float = 1.0
    vision: float = 0.5
    action: float = 1.0

    def as_tensor(self) -> Tensor:
        return torch.tensor([self.text, self.vision, self.action])


@dataclass
class LossOutput:
    loss: Tensor  # weighted mean, the quantity to optimise
    text: Tensor  # unweighted mean CE over text targets (for logging; nan if none)
    vision: Tensor  # unweighted mean CE over visual targets
    tokens: int  # targets that count


def token_classes(targets: Tensor, visual_start: int, codebook_size: int, action_ids: tuple[int, int] | None = None):
    """(…) target ids -> (…) class per target: VISION for visual codes, ACTION inside `action_ids`
    [lo, hi), TEXT otherwise (ignored targets get TEXT too; their weight is zeroed by the mask)."""
    classes = torch.full_like(targets, TEXT)
    classes[(targets >= visual_start) & (targets < visual_start + codebook_size)] = VISION
    if action_ids is not None:
        classes[(targets >= action_ids[0]) & (targets < action_ids[1])] = ACTION
    return classes


def next_token_loss(
    hidden: Tensor, weight: Tensor, labels: Tensor, classes: Tensor, weights: LossWeights, chunk: int | None = None
) -> LossOutput:
    """Weighted next-token CE. hidden (B, T, D); labels, classes (B, T) aligned with the tokens."""
    targets = labels[:, 1:].reshape(-1)  # (N,)
    cls = classes[:, 1:].reshape(-1)
    ce = linear_cross_entropy(hidden[:, :-1].reshape(-1, hidden.shape[-1]), weight, targets, chunk)
    valid = targets != IGNORE
    w = weights.as_tensor().to(ce.device)[cls] * valid  # (N,)
    loss = (ce * w).sum() / w.sum().clamp_min(1e-8)
    with torch.no_grad():
        text, vision = valid & (cls == TEXT), valid & (cls == VISION)
        text_ce = ce[text].mean() if text.any() else ce.new_tensor(float("nan"))
        vision_ce = ce[vision].mean() if vision.any() else ce.new_tensor(float("nan"))
    return LossOutput(loss=loss, text=text_ce, vision=vision_ce, tokens=int(valid.sum()))


def sequence_logps(hidden: Tensor, weight: Tensor, labels: Tensor, chunk: int | None = None) -> Tensor:
    """(B,) summed log-probabilities of each row's labelled next tokens."""
    b = hidden.shape[0]
    targets = labels[:, 1:].reshape(-1)
    ce = linear_cross_entropy(hidden[:, :-1].reshape(-1, hidden.shape[-1]), weight, targets, chunk)
    return -ce.view(b, -1).sum(1)


def dpo_loss(pol_chosen: Tensor, pol_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float) -> Tensor:
    """Per-pair DPO loss (Rafailov et al., 2023) on summed log-probs (B,): -log sigmoid(beta * margin).
    Equal policy and reference give ln 2."""
    margin = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)
