"""Losses against hand-computed values."""

import math

import pytest
import torch

from emu3.train import linear_ce
from emu3.train.losses import (
    IGNORE,
    TEXT,
    VISION,
    LossWeights,
    dpo_loss,
    guided_sequence_logps,
    linear_cross_entropy,
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


def _ce_problem(n=37, d=8, v=50, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=g).to(dtype).requires_grad_()
    weight = torch.randn(v, d, generator=g).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = IGNORE
    row_weights = torch.rand(n, generator=g) + 0.5  # a weighted sum exercises the incoming gradient
    return hidden, weight, targets, row_weights


def _reference_ce(hidden, weight, targets):
    logits = torch.nn.functional.linear(hidden, weight).float()
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="none")


@pytest.mark.parametrize("keep", [0, 10**6])  # 0: logits recomputed chunk by chunk in the backward pass
@pytest.mark.parametrize("rows", [7, 37, None])
def test_linear_cross_entropy_equals_the_plain_route(monkeypatch, keep, rows):
    monkeypatch.setattr(linear_ce, "KEEP_LOGITS", keep)
    hidden, weight, targets, row_weights = _ce_problem()
    a = linear_cross_entropy(hidden, weight, targets, rows)
    ga = torch.autograd.grad((a * row_weights).sum(), (hidden, weight))
    b = _reference_ce(hidden, weight, targets)
    gb = torch.autograd.grad((b * row_weights).sum(), (hidden, weight))
    torch.testing.assert_close(a, b)
    assert (a[targets == IGNORE] == 0).all()
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("keep", [0, 10**6])
def test_linear_cross_entropy_under_bf16_autocast_matches_autocast_reference(monkeypatch, keep):
    monkeypatch.setattr(linear_ce, "KEEP_LOGITS", keep)
    hidden, weight, targets, row_weights = _ce_problem(n=64, d=32, v=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = linear_cross_entropy(hidden, weight, targets, rows=16)
        b = _reference_ce(hidden, weight, targets)
    assert a.dtype == b.dtype == torch.float32
    ga = torch.autograd.grad((a * row_weights).sum(), (hidden, weight))
    gb = torch.autograd.grad((b * row_weights).sum(), (hidden, weight))
    torch.testing.assert_close(a, b)  # same bf16 logits, same fp32 logsumexp
    for x, y in zip(ga, gb, strict=True):
        assert x.dtype == torch.float32  # gradients come back in the parameters' dtype
        torch.testing.assert_close(x, y, atol=2e-2, rtol=2e-2)  # one bf16 rounding of the logit gradient


def test_linear_cross_entropy_without_grad_and_with_a_frozen_projection():
    hidden, weight, targets, _ = _ce_problem()
    with torch.no_grad():
        torch.testing.assert_close(
            linear_cross_entropy(hidden, weight, targets), _reference_ce(hidden, weight, targets)
        )
    frozen = weight.detach()
    (gh,) = torch.autograd.grad(linear_cross_entropy(hidden, frozen, targets).sum(), hidden)
    (ref,) = torch.autograd.grad(_reference_ce(hidden, frozen, targets).sum(), hidden)
    torch.testing.assert_close(gh, ref)


def test_linear_cross_entropy_refuses_a_second_backward_over_its_reused_buffer():
    hidden, weight, targets, _ = _ce_problem()
    loss = linear_cross_entropy(hidden, weight, targets).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):  # a loud error, not silently wrong gradients
        loss.backward()


def test_sequence_logps_sum_labelled_targets():
    weight, hidden = _setup()
    labels = torch.tensor([[7, 0, IGNORE, 1]])
    expected = math.log(1 / 3) + (1.0 - math.log(2 + math.e))
    assert math.isclose(sequence_logps(hidden, weight, labels).item(), expected, rel_tol=1e-6)


def test_guided_sequence_logps_by_hand():
    """Identity projection: the conditional row scores target 0 from logits (2, 0, 0), the
    unconditional row (at another offset) from (0, 1, 0); at scale 2 the guided log-probs are
    log_softmax(2 c - u) of the two rows' log-softmaxes."""
    weight, hidden = _setup()
    labels = torch.tensor([[7, IGNORE, 0, IGNORE]])  # target 0 at position 2, read from position 1: (2, 0, 0)
    hidden_u = torch.tensor([[[5.0, 5.0, 5.0], [4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    labels_u = torch.tensor([[7, IGNORE, IGNORE, 0]])  # target 0 at position 3, read from position 2: (0, 1, 0)
    c = torch.log_softmax(torch.tensor([2.0, 0.0, 0.0]), -1)
    u = torch.log_softmax(torch.tensor([0.0, 1.0, 0.0]), -1)
    expected = torch.log_softmax(u + 2 * (c - u), -1)[0].item()
    got, conditional = guided_sequence_logps(hidden, hidden_u, weight, labels, labels_u, 2.0)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    assert math.isclose(conditional.item(), sequence_logps(hidden, weight, labels).item(), rel_tol=1e-6)
    # scale 1 is the conditional distribution
    one, _ = guided_sequence_logps(hidden, hidden_u, weight, labels, labels_u, 1.0)
    assert math.isclose(one.item(), sequence_logps(hidden, weight, labels).item(), rel_tol=1e-6)
    with pytest.raises(ValueError, match="same tokens"):
        guided_sequence_logps(hidden, hidden_u, weight, labels, torch.tensor([[7, IGNORE, IGNORE, 1]]), 2.0)


def test_dpo_at_initialisation_is_ln2_and_rewards_the_margin():
    x = torch.tensor([-10.0, -3.0])
    assert torch.allclose(dpo_loss(x, x + 1, x, x + 1, beta=0.1), torch.full((2,), math.log(2)))
    better = dpo_loss(torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([-2.0]), torch.tensor([-4.0]), 0.5)
    assert math.isclose(better.item(), -math.log(1 / (1 + math.exp(-0.5 * 2))), rel_tol=1e-6)
    # DPO-Positive: the chosen sequence fell 1 below the reference, so weight 3 takes 3 off the margin 2
    positive = dpo_loss(torch.tensor([-3.0]), torch.tensor([-7.0]), torch.tensor([-2.0]), torch.tensor([-4.0]), 0.5,
                        positive=3.0)  # fmt: skip
    assert math.isclose(positive.item(), -math.log(1 / (1 + math.exp(-0.5 * (2 - 3)))), rel_tol=1e-6)
    # ... and nothing while the chosen one stays above it
    above = dpo_loss(torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([-2.0]), torch.tensor([-4.0]), 0.5, 3.0)
    assert torch.equal(above, better)


def test_token_classes():
    ids = torch.tensor([5, 100, 163, 164, 200])
    assert token_classes(ids, visual_start=100, codebook_size=64).tolist() == [TEXT, VISION, VISION, TEXT, TEXT]
    assert token_classes(ids, 100, 64, action_ids=(190, 210)).tolist()[-1] == 2
