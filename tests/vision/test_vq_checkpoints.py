"""Vision tokenizer parity with transformers' Emu3VQVAE, in all three checkpoint layouts."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from emu3.convert.safetensors_io import CheckpointError
from emu3.convert.vq import load_vision_tokenizer, save_vision_tokenizer
from tests.helpers.hf_models import require_transformers

transformers = require_transformers()


@pytest.fixture(scope="module")
def hf_vq():
    torch.manual_seed(0)
    cfg = transformers.Emu3VQVAEConfig(
        codebook_size=512,
        embed_dim=4,
        latent_channels=4,
        base_channels=32,
        channel_multiplier=[1, 2, 2, 4],
        num_res_blocks=1,
        attn_resolutions=[3],
        hidden_size=128,
        temporal_downsample_factor=4,
    )
    model = transformers.Emu3VQVAE(cfg).eval()
    with torch.no_grad():  # make norms and batch statistics matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def hf_folder(hf_vq, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq")
    hf_vq.save_pretrained(folder)
    return folder


def _hf_codes(hf_vq, pixels):
    sizes = torch.tensor([pixels.shape[-2:]] * pixels.shape[0])
    with torch.no_grad():
        return torch.stack(hf_vq.encode(pixels, sizes).image_tokens)


def _pixels(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_image_codes_and_pixels_match_transformers(hf_vq, hf_folder):
    ours = load_vision_tokenizer(hf_folder)
    x = _pixels(2, 3, 40, 56)
    codes = ours.encode_image(x)
    ref = _hf_codes(hf_vq, x)
    assert codes.shape == (2, 5, 7) and torch.equal(codes, ref) and ref.unique().numel() > 5
    with torch.no_grad():
        torch.testing.assert_close(ours.decode_image(codes), hf_vq.decode(ref), atol=1e-4, rtol=0)


@pytest.mark.parametrize("frames", [4, 8])
def test_video_codes_and_frames_match_transformers(hf_vq, hf_folder, frames):
    ours = load_vision_tokenizer(hf_folder)
    v = _pixels(1, frames, 3, 32, 32, seed=frames)
    codes = ours.encode_video(v)
    ref = _hf_codes(hf_vq, v)
    assert codes.shape == (1, frames // 4, 4, 4) and torch.equal(codes, ref)
    with torch.no_grad():
        torch.testing.assert_close(ours.decode_video(codes), hf_vq.decode(ref), atol=1e-4, rtol=0)


def _baai_name(hf_name: str) -> str:
    """The inverse of transformers' converter renames (spec 2.7): BAAI's original names."""
    name = hf_name.replace("down_block.down.", "down.").replace("up_block.up.", "up.")
    name = name.replace("middle_block.attn_norm.", "mid.attn_1.norm.").replace("middle_block.", "mid.")
    name = re.sub(r"attn_norms\.(\d+)\.", r"attn.\1.norm.", name)
    return name.replace("q_proj", "q").replace("k_proj", "k").replace("v_proj", "v").replace("out_proj", "proj_out")


def test_baai_layout_gives_the_same_codes(hf_vq, hf_folder, tmp_path):
    state = {}
    for k, v in load_file(hf_folder / "model.safetensors").items():
        name = _baai_name(k)
        if re.search(r"\.(q|k|v|proj_out)\.weight$", name):
            v = v[:, :, None, None]  # BAAI stores attention projections as 1x1 convolutions
        state[name] = v.contiguous()
    save_file(state, tmp_path / "model.safetensors")
    config = {"model_type": "Emu3VisionVQ", "codebook_size": 512, "embed_dim": 4, "z_channels": 4, "double_z": False,
              "in_channels": 3, "out_channels": 3, "temporal_downsample_factor": 4, "ch": 32, "ch_mult": [1, 2, 2, 4],
              "num_res_blocks": 1, "attn_resolutions": [3], "dropout": 0.0}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    x = _pixels(1, 3, 32, 48, seed=3)
    assert torch.equal(load_vision_tokenizer(tmp_path).encode_image(x), _hf_codes(hf_vq, x))


def test_vq_part_of_a_full_emu3_folder(tmp_path):
    from tests.helpers.hf_models import tiny_hf_emu3

    full = tiny_hf_emu3(seed=1)
    full.save_pretrained(tmp_path)
    ours = load_vision_tokenizer(tmp_path)
    x = _pixels(1, 3, 16, 24, seed=4)
    assert torch.equal(ours.encode_image(x), _hf_codes(full.model.vqmodel, x))


def test_our_save_opens_in_transformers(hf_folder, tmp_path):
    ours = load_vision_tokenizer(hf_folder)
    save_vision_tokenizer(ours, tmp_path)
    reopened = transformers.Emu3VQVAE.from_pretrained(tmp_path).eval()
    x = _pixels(2, 3, 24, 24, seed=5)
    assert torch.equal(_hf_codes(reopened, x), ours.encode_image(x))


def test_wrong_checkpoint_names_the_key(hf_folder, tmp_path):
    state = load_file(hf_folder / "model.safetensors")
    state.pop("decoder.conv_out.bias")
    state["quantize.embedding.weight"] = state["quantize.embedding.weight"][:-1].contiguous()
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((hf_folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match="missing.*decoder.conv_out.bias|shape of quantize.embedding.weight"):
        load_vision_tokenizer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not an Emu3 vision tokenizer"):
        load_vision_tokenizer(tmp_path)
