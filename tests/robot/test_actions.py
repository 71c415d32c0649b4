"""The action tokenizer: bins, round trip, spans; and the policy's sequence layout (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emu3.robot.evaluate import wilson_interval
from emu3.robot.sequence import IGNORE, Layout, ObsConfig
from emu3.robot.train import instruction_tokenizer
from emu3.tokens.actions import ActionTokenizer


def test_round_trip_error_is_at_most_half_a_bin():
    tok = ActionTokenizer(first_id=1000, dims=3, n_bins=256)
    actions = torch.rand(10_000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids = tok.encode(actions)
    assert ids.min() >= 1000 and ids.max() < 1256
    err = (tok.decode(ids) - actions).abs().max().item()
    assert err <= tok.max_error + 1e-6
    assert tok.max_error == pytest.approx(1 / 256)
    edges = torch.tensor([[-1.0, 1.0, 0.0]])  # the extremes land in the first and last bins
    assert tok.encode(edges).tolist() == [[1000, 1255, 1128]]


def test_out_of_range_values_are_clipped_and_other_ranges_work():
    tok = ActionTokenizer(first_id=0, dims=2, n_bins=64, low=-0.35, high=0.35)
    x = torch.tensor([[-5.0, 5.0], [0.1, -0.2]])
    back = tok.decode(tok.encode(x))
    assert torch.allclose(back[0], torch.tensor([-0.35, 0.35]), atol=tok.max_error + 1e-6)
    assert (back[1] - x[1]).abs().max() <= tok.max_error + 1e-6


def test_span_has_markers_and_parses_back():
    tok = ActionTokenizer(first_id=500, dims=3, n_bins=256, chunk=4, boa=10, eoa=11)
    actions = torch.linspace(-1, 1, 12).view(4, 3)
    span = tok.span(actions)
    assert len(span) == tok.span_length == 14 and span[0] == 10 and span[-1] == 11
    assert all(500 <= i < 756 for i in span[1:-1])
    assert torch.allclose(tok.parse(span), actions, atol=tok.max_error + 1e-6)
    assert torch.allclose(tok.parse(span[1:-1]), actions, atol=tok.max_error + 1e-6)  # without markers too
    with pytest.raises(ValueError):
        tok.decode(torch.tensor([499]))
    with pytest.raises(ValueError):
        ActionTokenizer(first_id=500, boa=600, eoa=11)  # a marker inside the bins


def test_layout_masks_everything_but_the_actions():
    tok = instruction_tokenizer(codebook_size=16)
    layout = Layout(tok, ObsConfig(frames=2, state=("gripper", "goal")), chunk=2)
    codes = [np.zeros((8, 8), np.int16), np.full((8, 8), 3, np.int16)]
    state = {"gripper": np.zeros(3), "goal": np.array([0.1, -0.1, 0.05]), "object": np.zeros(3)}
    prompt = layout.prompt("push the green cube to the target", codes, state)
    s = tok.special
    assert prompt[0] == s.bos and prompt[-1] == s.boa
    assert prompt.count(s.boi) == 2 and prompt.count(s.visual(3)) == 64
    assert all(i < layout.vocab_size for i in prompt)
    ex = layout.example(prompt, np.array([[0.5, -0.5, 0.0], [1.0, 1.0, -1.0]]), "push")
    labelled = [t for t, lab in zip(ex.tokens, ex.labels, strict=True) if lab != IGNORE]
    assert len(labelled) == 2 * 3 + 1 and labelled[-1] == s.eoa
    assert all(layout.actions.first_id <= t < layout.actions.end_id for t in labelled[:-1])
    # instruction ids never collide with the appended action / state bins
    assert max(tok.encode("move the gripper to the green target")) < s.pad


def test_wilson_interval():
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-3) and hi == pytest.approx(0.9565, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
