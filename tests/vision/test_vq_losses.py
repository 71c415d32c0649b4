"""The VQ's adversarial losses: hinge values by hand, the patch critic's output map."""

import torch

from emu3.vision.losses import PatchDiscriminator, discriminator_hinge_loss, generator_adversarial_loss


def test_hinge_losses_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - x): 0, 0.5, 2 -> mean 2.5 / 3
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + x): 0, 1, 2 -> mean 1
    expected = 0.5 * (2.5 / 3 + 1.0)
    assert torch.isclose(discriminator_hinge_loss(real, fake), torch.tensor(expected))
    assert torch.isclose(generator_adversarial_loss(fake), torch.tensor(1 / 3))


def test_patch_critic_scores_patches_independently_of_the_batch():
    critic = PatchDiscriminator(3, width=32, layers=3).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    out = critic(x)
    assert out.shape == (3, 1, 8, 8)  # three stride-2 convolutions: one logit per 8x8 patch
    assert torch.allclose(critic(x[:1]), out[:1], atol=1e-5)
