"""A tiny random Pipeline built inside the test session: random decoder, random VQ, tiny tokenizer.

    pipe = tiny_pipeline()                  # in memory, float32, CPU
    folder = save_tiny_pipeline(tmp_path)   # the same on disk, for Pipeline.load / `emu3 serve --model`

Images are 32x32 pixels by default (a 4x4 latent grid with the tiny VQ), so a guided image is a few
dozen decode steps; prompts use a short suffix and negative prompt for the same reason.
"""

from __future__ import annotations

from pathlib import Path

from emu3.generate.pipeline import Pipeline, PipelineConfig
from emu3.model.config import tiny
from emu3.model.init import build_decoder
from tests.helpers.tiny_tokenizers import CODEBOOK_SIZE, tiny_text_tokenizer

TINY_CONFIG = PipelineConfig(
    positive_suffix="",
    negative_prompt="blurry.",
    system="You are a helpful assistant.",
    image_size=None,
    video_frames=2,
    guidance=3.0,
    temperature=1.0,
    top_k=0,
    max_answer_tokens=12,
)


def tiny_vq(codebook_size: int = CODEBOOK_SIZE, seed: int = 0):
    from emu3.vision.config import tiny as tiny_vq_config
    from emu3.vision.vq import build_vq

    return build_vq(tiny_vq_config(codebook_size=codebook_size), seed=seed).eval()


def tiny_pipeline(*, seed: int = 0, image_side: int | None = None, vq=None) -> Pipeline:
    tok = tiny_text_tokenizer()
    vq = vq if vq is not None else tiny_vq(tok.special.codebook_size, seed)
    side = image_side or 4 * vq.cfg.spatial_factor
    decoder = build_decoder(tiny(vocab_size=tok.vocab_size, max_seq_len=512, image_area=side * side), seed=seed)
    return Pipeline(decoder.eval(), vq, tok, TINY_CONFIG)


def save_tiny_pipeline(folder: Path, pipe: Pipeline | None = None) -> Path:
    """Decoder, tokenizer, VQ and generation defaults in one folder that Pipeline.load reads."""
    from emu3.convert.vq import save_vision_tokenizer

    from emu3.convert.decoder import save_decoder

    pipe = pipe or tiny_pipeline()
    folder.mkdir(parents=True, exist_ok=True)
    save_decoder(pipe.decoder, folder)
    pipe.tok.save(folder)
    save_vision_tokenizer(pipe.vq, folder)
    pipe.cfg.write(folder)
    return folder
