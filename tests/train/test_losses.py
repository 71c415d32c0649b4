"""Losses against hand-computed values."""

import math

import pytest
import torch

from emu3.train import losses
from emu3.train.losses import (
    IGNORE,
    TEXT,
    VISION,
    LossWeights,
    chunked_cross_entropy,
    dpo_loss,
    next_token_loss,
    sequence_logps,
    token_classes,
)


def _setup():
    # Identity projection: logits equal the hidden states, so every CE is easy to write down.
    weight = torch.eye(3)
    hidden = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])
    return weight, hidden


def test_weighted_next_token_loss_by_hand():
    weight, hidden = _setup()
    labels = torch.tensor([[7, 0, 2, 1]])  # targets after the shift: 0 (text), 2 (vision), 1 (text)
    classes = torch.tensor([[TEXT, TEXT, VISION, TEXT]])
    ce0 = -math.log(1 / 3)  # uniform logits, target 0
    ce1 = -(0.0 - math.log(math.exp(2) + 2))  # logits (2, 0, 0), target 2
    ce2 = -(1.0 - math.log(2 + math.e))  # logits (0, 1, 0), target 1
    out = next_token_loss(hidden, weight, labels, classes, LossWeights(text=1.0, vision=0.5))
    expected = (ce0 + 0.5 * ce1 + ce2) / 2.5
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-6)
    assert math.isclose(out.vision.item(), ce1, rel_tol=1e-6)
    assert math.isclose(out.text.item(), (ce0 + ce2) / 2, rel_tol=1e-6) and out.tokens == 3


def test_ignored_targets_do_not_count():
    weight, hidden = _setup()
    labels = torch.tensor([[7, IGNORE, 2, IGNORE]])
    out = next_token_loss(hidden, weight, labels, torch.zeros_like(labels), LossWeights())
    assert math.isclose(out.loss.item(), -(0.0 - math.log(math.exp(2) + 2)), rel_tol=1e-6) and out.tokens == 1


@pytest.mark.parametrize("one_piece", [0, 10**6])  # 0: every call takes the chunked, recomputing path
def test_chunked_equals_unchunked_values_and_gradients(monkeypatch, one_piece):
    monkeypatch.setattr(losses, "ONE_PIECE_LOGITS", one_piece)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (37,), generator=g)
    targets[::5] = IGNORE
    a = chunked_cross_entropy(hidden, weight, targets, chunk=7)
    ga = torch.autograd.grad(a.sum(), (hidden, weight))
    full = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, ignore_index=IGNORE, reduction="none")
    gb = torch.autograd.grad(full.sum(), (hidden, weight))
    torch.testing.assert_close(a, full)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


def test_sequence_logps_sum_labelled_targets():
    weight, hidden = _setup()
    labels = torch.tensor([[7, 0, IGNORE, 1]])
    expected = math.log(1 / 3) + (1.0 - math.log(2 + math.e))
    assert math.isclose(sequence_logps(hidden, weight, labels).item(), expected, rel_tol=1e-6)


def test_dpo_at_initialisation_is_ln2_and_rewards_the_margin():
    x = torch.tensor([-10.0, -3.0])
    assert torch.allclose(dpo_loss(x, x + 1, x, x + 1, beta=0.1), torch.full((2,), math.log(2)))
    better = dpo_loss(torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([-2.0]), torch.tensor([-4.0]), 0.5)
    assert math.isclose(better.item(), -math.log(1 / (1 + math.exp(-0.5 * 2))), rel_tol=1e-6)


def test_token_classes():
    ids = torch.tensor([5, 100, 163, 164, 200])
    assert token_classes(ids, visual_start=100, codebook_size=64).tolist() == [TEXT, VISION, VISION, TEXT, TEXT]
    assert token_classes(ids, 100, 64, action_ids=(190, 210)).tolist()[-1] == 2
