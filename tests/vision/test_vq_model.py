"""The VQ model on tiny configs: shapes, odd sizes, training path, errors, dtype, image I/O."""

import numpy as np
import pytest
import torch
from PIL import Image

from emu3.vision import config, image_io, video_io
from emu3.vision.vq import build_vq


@pytest.fixture(scope="module")
def vq():
    return build_vq(config.tiny(), seed=0).eval()


@pytest.mark.parametrize("size", [(16, 16), (20, 36), (44, 8)])
def test_image_round_trip_shapes_for_odd_sizes(vq, size):
    x = torch.rand(3, 3, *size) * 2 - 1
    codes = vq.encode_image(x)
    f = vq.cfg.spatial_factor
    assert codes.shape == (3, size[0] // f, size[1] // f) and codes.dtype == torch.long
    assert vq.decode_image(codes).shape == (3, 3, *size)


def test_video_round_trip_shapes(vq):
    v = torch.rand(2, 8, 3, 16, 24) * 2 - 1
    codes = vq.encode_video(v)
    assert codes.shape == (2, 2, 4, 6)
    assert vq.decode_video(codes).shape == (2, 8, 3, 16, 24)


def test_images_are_encoded_independently_of_their_batch(vq):
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.equal(vq.encode_image(x)[1:2], vq.encode_image(x[1:2]))


def test_encode_and_decode_ignore_the_callers_autocast(vq):
    # The codes are the fp32 model's: a bf16 autocast around a pipeline must not change them (it changed
    # 55% of the demo tokenizer's codes before encode / decode turned it off).
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    v = torch.rand(2, 8, 3, 16, 16) * 2 - 1
    plain = vq.encode_image(x), vq.encode_video(v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = vq.encode_image(x), vq.encode_video(v), vq.decode_image(plain[0]), vq.decode_video(plain[1])
        latents = vq._image_latents(x)  # the training path keeps the autocast
    assert torch.equal(mixed[0], plain[0]) and torch.equal(mixed[1], plain[1])
    assert mixed[2].dtype == mixed[3].dtype == torch.float32
    assert torch.equal(mixed[2], vq.decode_image(plain[0])) and torch.equal(mixed[3], vq.decode_video(plain[1]))
    assert latents.dtype == torch.bfloat16


def test_training_forward_passes_gradients_straight_through():
    model = build_vq(config.tiny(), seed=1).train()
    v = torch.rand(2, 4, 3, 16, 16) * 2 - 1
    out = model.reconstruct(v)
    loss = (out.pixels - v).abs().mean() + out.codebook_loss + 0.25 * out.commitment_loss
    loss.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # through the quantiser
    assert model.quantize.embedding.weight.grad.abs().sum() > 0
    assert out.codes.shape == (2, 1, 4, 4)


def test_dead_codes_restart_from_encoder_outputs():
    model = build_vq(config.tiny(), seed=2)
    counts = torch.zeros(model.cfg.codebook_size, dtype=torch.long)
    counts[:3] = 1
    z = torch.randn(50, model.cfg.embed_dim)
    assert model.quantize.restart_dead(counts, z) == model.cfg.codebook_size - 3
    rows = model.quantize.embedding.weight[3:]
    assert all(any(torch.equal(r, zz) for zz in z) for r in rows[:5])


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(1, 3, 2, 8), "at least 4x4"),
        (torch.rand(1, 3, 18, 16), "multiples of 4"),
        (torch.rand(3, 16, 16), "expects \\(B, 3, H, W\\)"),
    ],
)
def test_bad_pixels_are_clear_errors(vq, bad, message):
    with pytest.raises(ValueError, match=message):
        vq.encode_image(bad)


def test_video_length_must_fit_the_temporal_factor(vq):
    with pytest.raises(ValueError, match="multiple of 4 frames"):
        vq.encode_video(torch.rand(1, 6, 3, 16, 16))
    with pytest.raises(ValueError, match="codes must be in"):
        vq.decode_image(torch.full((1, 2, 2), 9999))


def test_bf16_keeps_batchnorm_in_fp32_and_runs():
    model = build_vq(config.tiny(), seed=0, dtype=torch.bfloat16).eval()
    assert model.encoder.time_res_stack[0].norm1.weight.dtype == torch.float32
    assert model.encoder.conv_in.weight.dtype == torch.bfloat16
    codes = model.encode_image(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert model.decode_image(codes).shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    "size, expected",
    [((200, 200), (512, 512)), ((2000, 1000), (1448, 720)), ((600, 800), (600, 800)), ((515, 515), (512, 512))],
)
def test_smart_resize_official_cases(size, expected):
    assert image_io.smart_resize(*size) == expected


def test_smart_resize_errors():
    with pytest.raises(ValueError, match="at least 8"):
        image_io.smart_resize(4, 100)
    with pytest.raises(ValueError, match="aspect ratio"):
        image_io.smart_resize(8, 100)


def test_pixels_round_trip_and_truncation():
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    pixels = image_io.to_pixels(image, 8)
    assert pixels.shape == (3, 16, 24) and pixels.min() >= -1 and pixels.max() <= 1
    back = image_io.to_uint8(pixels)
    assert np.abs(back.astype(int) - image).max() <= 1 and (back != image).any()  # truncation, not rounding


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        image_io.read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        image_io.read_image(tmp_path / "bad.png")
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(tmp_path / "grey.png")
    assert image_io.read_image(tmp_path / "grey.png").shape == (8, 8, 3)


def test_gif_round_trip(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    path = video_io.write_video(tmp_path / "clip.gif", frames)
    back = video_io.read_video(path)
    assert back.shape == frames.shape
