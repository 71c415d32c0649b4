"""Codes <-> ids for the visual block."""

import pytest
import torch

from emu3.tokens.special import SpecialTokens
from emu3.tokens.visual_vocab import VisualVocab


def test_round_trip_and_membership():
    vv = VisualVocab.from_special(SpecialTokens.official())
    codes = torch.tensor([[0, 1], [32767, 5]])
    ids = vv.codes_to_ids(codes)
    assert ids.tolist() == [[151854, 151855], [184621, 151859]]
    assert torch.equal(vv.ids_to_codes(ids), codes)
    assert vv.is_visual(torch.tensor([151853, 151854, 184621, 184622])).tolist() == [False, True, True, False]


def test_rejects_ids_and_codes_outside_the_block():
    vv = VisualVocab(first_id=10, codebook_size=4)
    with pytest.raises(ValueError, match=r"id 9 at index \[1\] is not a visual token"):
        vv.ids_to_codes(torch.tensor([10, 9, 11]))
    with pytest.raises(ValueError, match="codes must lie in"):
        vv.codes_to_ids(torch.tensor([0, 4]))
    with pytest.raises(TypeError):
        vv.codes_to_ids(torch.tensor([0.5]))
    with pytest.raises(ValueError):
        VisualVocab(first_id=0, codebook_size=0)
