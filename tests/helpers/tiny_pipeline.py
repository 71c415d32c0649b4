"""A tiny random Pipeline built inside the test session: random decoder, random VQ, tiny tokenizer.

    pipe = tiny_pipeline()                  # in memory, float32, CPU
    model, vq = save_tiny_pipeline(tmp)     # the same on disk: Pipeline.load(model, vq_folder=vq)

Images are 32x32 pixels by default (an 8x8 latent grid with the tiny VQ's 4x spatial factor), so a
guided image is 75 decode steps; prompts use no suffix and a short negative prompt for speed.
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
    video_frames=1,
    guidance=3.0,
    temperature=1.0,
    top_k=0,
    max_answer_tokens=12,
)


def tiny_vq(codebook_size: int = CODEBOOK_SIZE, seed: int = 0):
    from emu3.vision.config import tiny as tiny_vq_config
    from emu3.vision.vq import build_vq

    return build_vq(tiny_vq_config(codebook_size=codebook_size), seed=seed).eval()


def tiny_pipeline(*, seed: int = 0, image_side: int = 32, vq=None) -> Pipeline:
    """Decoder context 512; its trained image area (the default size) is image_side x image_side."""
    tok = tiny_text_tokenizer()
    vq = vq if vq is not None else tiny_vq(tok.special.codebook_size, seed)
    decoder = build_decoder(tiny(vocab_size=tok.vocab_size, max_seq_len=512, image_area=image_side**2), seed=seed)
    return Pipeline(decoder.eval(), vq, tok, TINY_CONFIG)


def save_tiny_pipeline(folder: Path, pipe: Pipeline | None = None) -> tuple[Path, Path]:
    """Write (folder/model, folder/vq): decoder + tokenizer + generation defaults, and the VQ."""
    from emu3.convert.decoder import save_decoder
    from emu3.convert.vq import save_vision_tokenizer

    pipe = pipe or tiny_pipeline()
    model, vq = folder / "model", folder / "vq"
    special = pipe.tok.special
    save_decoder(pipe.decoder, model, bos_id=special.bos, eos_id=special.eos, pad_id=special.pad)
    pipe.tok.save(model)
    pipe.cfg.write(model)
    vq.mkdir(parents=True, exist_ok=True)
    save_vision_tokenizer(pipe.vq, vq)
    return model, vq
