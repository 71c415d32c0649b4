"""The VQ locality regulariser: CutMix pairs, which codes count as unchanged, the loss value."""

import torch

from emu3.vision.locality import cutmix, locality_loss, unchanged_codes


def test_cutmix_replaces_one_rectangle_with_the_next_images_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 32, 32)
    mixed = cutmix(x, g)
    donor = x.roll(1, dims=0)
    for i in range(5):
        changed = (mixed[i] != x[i]).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        assert len(rows) >= 6 and len(cols) >= 6  # at least 0.2 of the side
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert changed[box].all()  # one solid rectangle
        assert torch.equal(mixed[i][:, box[0], box[1]], donor[i][:, box[0], box[1]])


def test_unchanged_codes_widens_each_patch_by_the_margin():
    a = torch.zeros(1, 3, 16, 16)
    b = a.clone()
    b[0, 1, 5, 5] = 1.0  # one pixel, inside code (1, 1) of a 4x4 grid of 4 px codes
    keep = unchanged_codes(a, b, factor=4, margin=0)
    assert (~keep[0]).nonzero().tolist() == [[1, 1]]
    keep = unchanged_codes(a, b, factor=4, margin=2)  # pixels 3..7 changed: codes 0 and 1 on each axis
    assert sorted((~keep[0]).nonzero().tolist()) == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert unchanged_codes(a, a, factor=4, margin=4).all()


def test_locality_loss_by_hand():
    z = torch.tensor([[[[1.0, 1.0], [3.0, 3.0]]]])  # (B=1, h=1, w=2, D=2)
    moved = z + torch.tensor([[[[1.0, 1.0], [2.0, 2.0]]]])
    scale = 1.0  # each channel takes the values 1 and 3: variance 1
    assert torch.isclose(locality_loss(z, moved, torch.tensor([[[True, True]]])), torch.tensor((1 + 4) / 2 / scale))
    assert torch.isclose(locality_loss(z, moved, torch.tensor([[[True, False]]])), torch.tensor(1 / scale))
    assert locality_loss(z, moved, torch.tensor([[[False, False]]])) == 0
