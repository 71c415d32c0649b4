"""Output projection and cross-entropy in one autograd function: per-row CE of hidden @ weight^T.

The plain route (F.linear, then F.cross_entropy on fp32 logits) walks the whole (N, V) logit tensor
many times: bf16 logits, an fp32 copy, the fp32 log-softmax kept for the backward pass, a zero-filled
fp32 gradient, its bf16 copy. On a CPU these passes over memory cost about as much as the matmuls.
Here rows go a cache-sized chunk at a time, and the logit gradient never needs a pass of its own:

    d ce_i / d logits_i = softmax_i - onehot(t_i), and with g_i the incoming gradient of ce_i,
    grad_hidden = diag(g) (P - Y) @ W        grad_weight = (P - Y)^T @ (diag(g) hidden)

so the forward pass turns each chunk of logits into softmax probabilities P in place (fp32
arithmetic, rounded once to the compute dtype, as autocast rounds the plain route's fp32 gradient),
the backward pass writes P - 1 at the N targets and folds g into the small (N, D) side of the
matmuls. When (N, V) is too big to keep, the backward pass recomputes P chunk by chunk.

Precision follows autocast: under a bf16 autocast, logits and P are bf16 and every softmax and
logsumexp is fp32, as in the plain route.

Shapes: N rows, D dim, V vocab, c rows in a chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100

# Up to this many elements, P (N, V) is kept (in the compute dtype) for the backward pass; above,
# the backward pass recomputes it chunk by chunk, so it never exists at once.
KEEP_LOGITS = 2**26
# Elements per chunk (8 MiB of fp32): the fp32 work of one chunk stays in cache.
CHUNK_ELEMENTS = 2**21
MIN_ROWS = 16  # with huge vocabularies, still rows enough for an efficient matmul


def chunk_rows(vocab: int) -> int:
    return max(MIN_ROWS, CHUNK_ELEMENTS // vocab)


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _softmax_(logits: Tensor, work: Tensor) -> Tensor:
    """Turn a chunk of logits (c, V) into softmax probabilities in place, computed in the fp32
    buffer `work` (c or more rows); returns the (c,) fp32 logsumexp."""
    x = work[: len(logits)].copy_(logits)
    top = x.amax(-1, keepdim=True)
    total = x.sub_(top).exp_().sum(-1, keepdim=True)
    logits.copy_(x.div_(total))
    return total.log_().add_(top)[:, 0]


def _rows(n: int, rows: int):
    return (slice(s, s + rows) for s in range(0, n, rows))


class _LinearCrossEntropy(torch.autograd.Function):
    # Every chunk reuses one fp32 work buffer (and, when recomputing, one logits buffer): freshly
    # allocated megabytes cost a page fault per 4 KiB on first touch, more than the arithmetic.

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, rows: int, keep: bool) -> Tensor:
        n, v = hidden.shape[0], weight.shape[0]
        valid = targets != IGNORE
        safe = targets.clamp_min(0)
        lse = hidden.new_empty(n, dtype=torch.float32)
        target_logit = torch.empty_like(lse)
        work = hidden.new_empty(min(rows, n), v, dtype=torch.float32)
        probs = hidden.new_empty(n if keep else min(rows, n), v)  # all rows, or one chunk's
        for sl in _rows(n, rows):
            chunk = probs[sl] if keep else probs[: len(hidden[sl])]
            torch.mm(hidden[sl], weight.t(), out=chunk)  # logits (c, V)
            target_logit[sl] = chunk.gather(1, safe[sl, None])[:, 0]
            lse[sl] = _softmax_(chunk, work)
        ctx.rows = rows
        ctx.save_for_backward(hidden, weight, safe, valid, lse, target_logit, probs if keep else None)
        return (lse - target_logit) * valid

    @staticmethod
    def backward(ctx, grad_ce: Tensor):
        hidden, weight, safe, valid, lse, target_logit, probs = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[:2]
        n, v, rows = hidden.shape[0], weight.shape[0], ctx.rows
        g = (grad_ce.float() * valid)[:, None]  # (N, 1), 0 for ignored rows
        scaled_hidden = (hidden * g).to(hidden.dtype)
        target_grad = (torch.exp(target_logit - lse) - 1).to(hidden.dtype)  # P - 1 at the targets, from fp32
        if probs is not None:
            probs[torch.arange(n, device=safe.device), safe] = target_grad
            grad_h = ((probs @ weight) * g).to(hidden.dtype) if need_h else None
            grad_w = probs.t() @ scaled_hidden if need_w else None
            return grad_h, grad_w, None, None, None
        # Recompute P chunk by chunk; accumulate the weight gradient in fp32 across chunks.
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        work = hidden.new_empty(min(rows, n), v, dtype=torch.float32)
        buffer = hidden.new_empty(min(rows, n), v)
        for sl in _rows(n, rows):
            p = torch.mm(hidden[sl], weight.t(), out=buffer[: len(hidden[sl])])
            _softmax_(p, work)
            p[torch.arange(len(p), device=p.device), safe[sl]] = target_grad[sl]
            if need_h:
                grad_h[sl] = (p @ weight) * g[sl]
            if need_w:
                grad_w += p.t() @ scaled_hidden[sl]
        return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None, None, None


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, rows: int | None = None) -> Tensor:
    """Per-row CE (N,) of logits = hidden (N, D) @ weight (V, D)^T against targets (N,); IGNORE -> 0.

    Equal, values and gradients, to F.cross_entropy(F.linear(hidden, weight).float(), targets,
    ignore_index=IGNORE, reduction="none") under the same autocast state (up to the rounding of the
    compute dtype). `rows` per chunk, or a cache-sized default."""
    dtype = _compute_dtype(hidden, weight)
    rows = rows or chunk_rows(weight.shape[0])
    grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    keep = grad and hidden.shape[0] * weight.shape[0] <= KEEP_LOGITS
    with torch.autocast(hidden.device.type, enabled=False):
        # The casts stay outside the function, so autograd returns gradients in the inputs' dtypes.
        return _LinearCrossEntropy.apply(hidden.to(dtype), weight.to(dtype), targets, rows, keep)
