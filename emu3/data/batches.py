"""Batches for the recipes: packed next-token rows, padded rows, preference pairs.

Packing puts whole examples back to back in rows of `seq_len` tokens; each example's positions
restart at 0, which the decoder turns into a document mask (no attention across examples). An
example longer than a row is never split: it is skipped and counted. Padding has position -1 and
label -100.

The stream is deterministic: epoch e visits the examples in the order of a permutation seeded by
(seed, e), and `position` (examples consumed) is all a checkpoint needs to resume exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from emu3.data.shards import Example

IGNORE = -100


@dataclass
class Batch:
    tokens: Tensor  # (B, T)
    labels: Tensor  # (B, T), aligned with tokens
    input_pos: Tensor  # (B, T), -1 on padding


class ExampleStream:
    """Examples in a seeded, epoch-wise shuffled order, resumable from a position."""

    def __init__(self, examples: Sequence[Example], seed: int, position: int = 0) -> None:
        if len(examples) == 0:
            raise ValueError("the corpus holds no examples of the requested kinds")
        self.examples, self.seed, self.position = examples, seed, position
        self._epoch, self._order = -1, None

    def next(self) -> Example:
        n = len(self.examples)
        epoch, i = divmod(self.position, n)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            self._order, self._epoch = torch.randperm(n, generator=g).tolist(), epoch
        self.position += 1
        return self.examples[self._order[i]]


def pack(stream: ExampleStream, rows: int, seq_len: int, pad_id: int) -> tuple[Batch, int]:
    """(batch of `rows` packed rows, number of over-long examples skipped)."""
    tokens = torch.full((rows, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((rows, seq_len), IGNORE, dtype=torch.long)
    pos = torch.full((rows, seq_len), -1, dtype=torch.long)
    skipped, row, used = 0, 0, 0
    pending: Example | None = None
    while row < rows:
        ex = pending or stream.next()
        pending = None
        n = len(ex.tokens)
        if n > seq_len:
            skipped += 1
            if skipped > 100 * rows:
                raise ValueError(f"almost every example is longer than seq_len={seq_len}; raise seq_len")
            continue
        if used + n > seq_len:  # close this row, keep the example for the next one
            row, used, pending = row + 1, 0, ex
            continue
        tokens[row, used : used + n] = torch.tensor(ex.tokens)
        labels[row, used : used + n] = torch.tensor(ex.labels)
        pos[row, used : used + n] = torch.arange(n)
        used += n
    if pending is not None:
        stream.position -= 1  # the example that did not fit is the first of the next batch
    return Batch(tokens, labels, pos), skipped


def pad(examples: Sequence[Example], pad_id: int) -> Batch:
    """One example per row, right-padded to the longest."""
    width = max(len(ex.tokens) for ex in examples)
    tokens = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    pos = torch.full((len(examples), width), -1, dtype=torch.long)
    for i, ex in enumerate(examples):
        n = len(ex.tokens)
        tokens[i, :n], labels[i, :n], pos[i, :n] = torch.tensor(ex.tokens), torch.tensor(ex.labels), torch.arange(n)
    return Batch(tokens, labels, pos)


def preference_pairs(examples: Sequence[Example]) -> list[tuple[Example, Example]]:
    """Stored pairs: each "chosen" example is followed by its "rejected" one."""
    if len(examples) % 2:
        raise ValueError("a preference corpus must hold chosen/rejected pairs")
    pairs = []
    for i in range(0, len(examples), 2):
        chosen, rejected = examples[i], examples[i + 1]
        if (chosen.kind, rejected.kind) != ("chosen", "rejected"):
            raise ValueError(f"pair {i // 2} is ({chosen.kind}, {rejected.kind}), expected (chosen, rejected)")
        pairs.append((chosen, rejected))
    return pairs


def mask_shared_tokens(chosen: Example, rejected: Example) -> tuple[Example, Example]:
    """The pair with no loss where the two sequences agree: at every position of two equally long
    sequences (e.g. two images of one fixed grid) that holds the same token in both, else on their
    common prefix only (beyond it, positions of unequal sequences do not correspond).

    A shared prefix cancels in DPO's margin anyway (same tokens, same context). After the first
    difference the contexts differ, so shared tokens no longer cancel and only add noise to the margin;
    the demo world's image pairs differ in about 14 of their 91 image tokens (docs/history.md, "DPO")."""
    a, b = chosen.tokens, rejected.tokens
    if len(a) == len(b):
        shared = {i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x == y}
    else:
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        shared = set(range(first))

    def masked(ex: Example) -> Example:
        return Example(ex.tokens, [IGNORE if i in shared else y for i, y in enumerate(ex.labels)], ex.kind)

    return masked(chosen), masked(rejected)


def unconditional_twin(example: Example, negative: Sequence[int], boi: int) -> Example:
    """The same image after the unconditional prompt: `negative` (BOS and the negative text), then the
    example's own image prefix (from its last BOI before the first labelled token) and everything after,
    with the same labels. Classifier-free guidance scores the image's codes after both prompts."""
    first = next((i for i, y in enumerate(example.labels) if y != IGNORE), None)
    if first is None:
        raise ValueError("the example has no labelled tokens, so no image to pair with the negative prompt")
    try:
        start = max(i for i in range(first) if example.tokens[i] == boi)
    except ValueError:
        raise ValueError("no BOI before the example's first labelled token: not a text-to-image sequence") from None
    body = example.tokens[start:]
    return Example([*negative, *body], [IGNORE] * len(negative) + example.labels[start:], example.kind)
