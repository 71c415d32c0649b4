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


def dpo_loss(
    pol_chosen: Tensor,
    pol_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    positive: float = 0.0,
) -> Tensor:
    """Per-pair DPO loss (Rafailov et al., 2023) on summed log-probs (B,): -log sigmoid(beta * margin).
    Equal policy and reference give ln 2.

    `positive` > 0 is DPO-Positive (Pal et al., 2024, "Smaug"): the margin loses positive *
    max(0, ref_chosen - pol_chosen), so lowering the chosen sequence's likelihood below the
    reference's costs, whatever happens to the rejected one (DPO alone can lower both)."""
    margin = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)
    if positive:
        margin = margin - positive * (ref_chosen - pol_chosen).clamp_min(0)
    return -F.logsigmoid(beta * margin)


def guided_sequence_logps(
    hidden_cond: Tensor,
    hidden_uncond: Tensor,
    weight: Tensor,
    labels_cond: Tensor,
    labels_uncond: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """(B,) summed log-probabilities of each row's labelled tokens under classifier-free guidance:
    log_softmax(u + scale * (c - u)) with c, u the log-softmax of the conditional and unconditional
    rows (the sampler's combination, generate/guidance.py), and (B,) the same sums under c alone
    (from the same logits). Row b of both holds the same labelled tokens after different prompts; the
    k-th labelled target of one is scored with the k-th of the other. Logits of the labelled rows only
    are formed (N, V)."""
    picked = []
    for hidden, labels in ((hidden_cond, labels_cond), (hidden_uncond, labels_uncond)):
        valid = labels[:, 1:] != IGNORE  # (B, T-1)
        picked.append((hidden[:, :-1][valid], labels[:, 1:][valid], valid.sum(1)))
    (hc, targets, counts), (hu, targets_u, counts_u) = picked
    if not (torch.equal(counts, counts_u) and torch.equal(targets, targets_u)):
        raise ValueError("conditional and unconditional rows must label the same tokens")
    cond = F.linear(hc, weight).float().log_softmax(-1)
    uncond = F.linear(hu, weight).float().log_softmax(-1)
    guided = (uncond + scale * (cond - uncond)).log_softmax(-1)
    rows = torch.repeat_interleave(torch.arange(len(counts), device=cond.device), counts)

    def summed(logp: Tensor) -> Tensor:  # (N, V) -> (B,) the targets' log-probs summed per row
        token = logp.gather(1, targets[:, None]).squeeze(1)
        return torch.zeros(len(counts), dtype=token.dtype, device=token.device).index_add(0, rows, token)

    return summed(guided), summed(cond)
