"""Tiled tokenizers (VQConfig.tile_size): a code depends only on its own tile's pixels."""

import dataclasses

import pytest
import torch

from emu3.convert.vq import load_vision_tokenizer, save_vision_tokenizer
from emu3.vision import config, tiles
from emu3.vision.vq import build_vq


def test_split_and_merge_are_inverse_and_row_major():
    x = torch.randn(2, 5, 3, 12, 8)
    parts, grid = tiles.split(x, 4, 4)
    assert grid == (3, 2) and parts.shape == (12, 5, 3, 4, 4)
    assert torch.equal(parts[1], x[0, ..., 0:4, 4:8])  # item 0, tile row 0, tile column 1
    assert torch.equal(parts[6 + 2], x[1, ..., 4:8, 0:4])  # item 1, tile row 1, tile column 0
    assert torch.equal(tiles.merge(parts, grid), x)
    with pytest.raises(ValueError, match="does not divide"):
        tiles.split(x, 5, 4)


@pytest.fixture(scope="module")
def pair():
    """The same weights whole-image (tile_size 0) and tiled (8 px tiles, 2x2 codes of the 4x tokenizer)."""
    whole = build_vq(config.tiny(), seed=3).eval()
    tiled = build_vq(config.tiny(tile_size=8), seed=3).eval()
    tiled.load_state_dict(whole.state_dict())
    return whole, tiled


def _crops(x, t):
    return [[x[..., r : r + t, c : c + t] for c in range(0, x.shape[-1], t)] for r in range(0, x.shape[-2], t)]


@pytest.mark.parametrize("kind, shape", [("image", (2, 3, 16, 24)), ("video", (1, 8, 3, 16, 16))])
def test_tiled_codes_and_pixels_are_those_of_each_tile_alone(pair, kind, shape):
    whole, tiled = pair
    encode, decode = f"encode_{kind}", f"decode_{kind}"
    x = torch.rand(*shape) * 2 - 1
    codes = getattr(tiled, encode)(x)
    expected = torch.cat([torch.cat([getattr(whole, encode)(c) for c in row], -1) for row in _crops(x, 8)], -2)
    assert torch.equal(codes, expected)
    by_tile = torch.cat([torch.cat([getattr(whole, decode)(c) for c in row], -1) for row in _crops(codes, 2)], -2)
    torch.testing.assert_close(getattr(tiled, decode)(codes), by_tile)


def test_training_forward_is_tiled_too(pair):
    whole, tiled = pair
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    rec = tiled.reconstruct_image(x)
    assert torch.equal(rec.codes[:, 0], tiled.encode_image(x))
    assert rec.pixels.shape == (1, 1, 3, 16, 16)


def test_tile_size_errors():
    with pytest.raises(ValueError, match="multiple of the spatial factor 4"):
        config.tiny(tile_size=6)
    vq = build_vq(config.tiny(tile_size=8))
    with pytest.raises(ValueError, match="multiples of 8"):
        vq.encode_image(torch.zeros(1, 3, 12, 16))


def test_tile_size_is_saved_and_loaded(pair, tmp_path):
    _, tiled = pair
    loaded = load_vision_tokenizer(save_vision_tokenizer(tiled, tmp_path / "vq"))
    assert loaded.cfg == tiled.cfg and dataclasses.replace(loaded.cfg, tile_size=0) == config.tiny()


def test_tile_videos_false_tiles_images_and_codes_videos_whole_frame(pair, tmp_path):
    whole, tiled = pair
    mixed = build_vq(config.tiny(tile_size=8, tile_videos=False), seed=3).eval()
    mixed.load_state_dict(whole.state_dict())
    image, video = torch.rand(2, 3, 16, 24) * 2 - 1, torch.rand(1, 8, 3, 16, 16) * 2 - 1
    assert torch.equal(mixed.encode_image(image), tiled.encode_image(image))  # images: as the tiled one
    latents = mixed._latents(video)  # before quantisation (an untrained codebook maps most of them to one code)
    assert torch.equal(latents, whole._latents(video)) and not torch.allclose(latents, tiled._latents(video))
    codes = mixed.encode_video(video)
    decoded = mixed.decode_video(codes)
    torch.testing.assert_close(decoded, whole.decode_video(codes))
    assert not torch.allclose(decoded, tiled.decode_video(codes))
    rec = mixed.reconstruct(video)  # the training forward follows the same rule
    assert torch.equal(rec.codes, codes)
    loaded = load_vision_tokenizer(save_vision_tokenizer(mixed, tmp_path / "vq"))
    assert loaded.cfg == mixed.cfg and not loaded.cfg.tile_videos


def test_whole_frame_videos_need_only_whole_latent_cells(pair):
    """tile_videos=false: a video's sides are multiples of one latent cell, not of the image tile."""
    whole, _ = pair
    mixed = build_vq(config.tiny(tile_size=8, tile_videos=False), seed=3).eval()
    mixed.load_state_dict(whole.state_dict())
    assert (mixed.cfg.pixel_multiple, mixed.cfg.video_pixel_multiple) == (8, 4)
    video = torch.rand(1, 4, 3, 12, 20) * 2 - 1  # 3x5 latent cells, no whole 8 px tile
    assert torch.equal(mixed.encode_video(video), whole.encode_video(video))
    assert mixed.reconstruct(video).pixels.shape == video.shape
    with pytest.raises(ValueError, match="multiples of 8"):  # images still come in tiles
        mixed.encode_image(video[:, 0])
    tiled = build_vq(config.tiny(tile_size=8))
    with pytest.raises(ValueError, match="multiples of 8"):  # a tiled tokenizer's videos too
        tiled.encode_video(video)
