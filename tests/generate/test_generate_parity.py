"""Our batched-CFG, plan-constrained greedy decoding gives transformers' tokens (its separate-pass
CFG processor plus the official prefix constraint), on a tiny random Emu3."""

import tempfile

import torch

import emu3
from emu3.generate.constraints import image_plan
from emu3.generate.generator import Generator, VocabLayout
from emu3.generate.sampling import SamplingConfig
from tests.helpers.hf_models import CODEBOOK, VISUAL_START, require_transformers, tiny_hf_emu3

require_transformers()
PAD, EOS, EOL, EOF, EOI = 0, 2, 4, 6, 7


def _official_prefix_fn(prompt_len, h, w):
    """The BAAI/transformers prefix constraint, keyed on the offset from the last prompt token."""
    visual = list(range(VISUAL_START, VISUAL_START + CODEBOOK))

    def allowed(batch_id, input_ids):
        offset = input_ids.shape[0] - prompt_len + 1
        if offset % (w + 1) == 0:
            return [EOL]
        if offset == (w + 1) * h + 1:
            return [EOF]
        if offset == (w + 1) * h + 2:
            return [EOI]
        if offset == (w + 1) * h + 3:
            return [EOS]
        if offset > (w + 1) * h + 3:
            return [PAD]
        return visual

    return allowed


def test_greedy_cfg_image_tokens_match_transformers_generate():
    hf = tiny_hf_emu3(seed=5)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = emu3.load_decoder(folder)
    h, w = 3, 4
    prompt = [1, 40, 41, 42, 5, 9, 10, 11, 3]
    negative = [1, 50, 51, 5, 9, 10, 11, 3]
    n_new = h * (w + 1) + 3
    with torch.no_grad():
        ref = hf.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            negative_prompt_ids=torch.tensor([negative]),
            negative_prompt_attention_mask=torch.ones(1, len(negative), dtype=torch.long),
            guidance_scale=3.0,
            do_sample=False,
            max_new_tokens=n_new,
            pad_token_id=PAD,
            eos_token_id=EOS,
            prefix_allowed_tokens_fn=_official_prefix_fn(len(prompt), h, w),
        )[0, len(prompt) :]
    gen = Generator(ours, VocabLayout(VISUAL_START, CODEBOOK, PAD, EOS))
    out = gen.generate(
        [prompt],
        [image_plan(h, w, EOL, EOF, EOI, EOS)],
        negative_prompts=[negative],
        guidance=3.0,
        sampling=SamplingConfig(temperature=0),
    )
    assert out.tokens[0].tolist() == ref.tolist()
