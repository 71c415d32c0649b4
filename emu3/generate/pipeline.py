"""Pipeline: the user-facing tasks, each a function of tokenizer + Generator + vision tokenizer.

    pipe = Pipeline.load("path/to/model")                     # decoder + VQ + tokenizer from a folder
    images = pipe.text_to_image(["a red circle"], seed=0)     # list of (H, W, 3) uint8
    answer = pipe.chat([Turn("user", (image, "what colour is it?"))])
    frames = pipe.text_to_video("a ball moving right", frames=4)
    longer = pipe.extend_video(frames, "a ball moving right", new_frames=2)

This module and data/pretokenize.py are the only ones that touch both the VQ and the decoder. All
sequences come from emu3.tokens (templates / format), all decoding from the Generator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emu3.generate.constraints import image_plan, text_plan, video_plan
from emu3.generate.generator import Generator, VocabLayout
from emu3.generate.sampling import SamplingConfig, overlay
from emu3.model.decoder import Emu3Decoder
from emu3.tokens import format as fmt
from emu3.tokens import templates
from emu3.tokens.text import TextTokenizer
from emu3.vision.vq import VQModel

PIPELINE_FILE = "emu3_pipeline.json"
# A generation model's folder may hold an understanding model (the paper's Emu3-Chat, post-trained from
# the same pretrained model) in this sub-folder; it shares its parent's vision tokenizer.
CHAT_FOLDER = "chat"


def chat_model_folder(folder: str | Path) -> Path | None:
    """`folder`/chat when the model folder holds an understanding model beside its generation model."""
    sub = Path(folder) / CHAT_FOLDER
    return sub if (sub / "config.json").is_file() else None


Progress = Callable[[int, int], None]  # (tokens done, tokens total)


CPU_VQ_BATCH = 8  # images per VQ call on a CPU (see `decode_images`)


@dataclass(frozen=True)
class PromptSampling:
    """Sampling for a family of prompts: those that `pattern` (a regular expression) matches whole, after
    stripping spaces. A field left None keeps the model's default."""

    pattern: str
    guidance: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    min_p: float | None = None

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise ValueError(f"prompt_sampling pattern {self.pattern!r} is not a regular expression: {err}") from err

    def matches(self, prompt: str) -> bool:
        return re.fullmatch(self.pattern, prompt.strip()) is not None


def video_windows(given: int, new_frames: int, most: int, context_frames: int | None = None) -> list[tuple[int, int]]:
    """How a clip of `given` latent frames is continued by `new_frames` more when at most `most` fit in one
    sequence: (context, new) latent frames of each window in turn. Each window reads the latest
    `context_frames` (default: as many as leave room for one new frame; fewer if fewer exist yet) and
    writes as many new ones as fit after them."""
    if most < 1 or new_frames < 1 or given < 0:
        raise ValueError(f"need most >= 1, new_frames >= 1 and given >= 0, got {most}, {new_frames}, {given}")
    if context_frames is not None and not 0 < context_frames < most:
        raise ValueError(f"context_frames must be in 1..{most - 1}, got {context_frames}")
    out, done = [], 0
    while done < new_frames:
        ctx = min(given + done, most - 1 if context_frames is None else context_frames)
        step = min(new_frames - done, most - ctx)
        out.append((ctx, step))
        done += step
    return out


@dataclass(frozen=True)
class PipelineConfig:
    """Generation defaults that belong to a model (saved beside it as emu3_pipeline.json).

    The defaults are BAAI's for the released checkpoints (spec 3.3, 4.1); a model trained here
    stores its own (e.g. no "masterpiece" suffix, its own image size)."""

    positive_suffix: str = templates.POSITIVE_SUFFIX
    negative_prompt: str = templates.DEFAULT_NEGATIVE
    system: str = templates.DEFAULT_SYSTEM
    image_size: tuple[int, int] | None = None  # pixels (H, W); None: from the decoder's image_area
    video_frames: int = 4  # latent frames of a generated video
    guidance: float = 3.0
    temperature: float = 1.0
    top_k: int = 2048
    top_p: float = 1.0
    # min-p on the conditional distribution (generate.sampling): under guidance, the candidates are the
    # tokens the prompt itself finds plausible. 0 (BAAI's sampling) disables.
    min_p: float = 0.0
    max_answer_tokens: int = 256
    # Ask a question before the image it is about (USER: question <image>), not after it (BAAI's
    # layout): for models fine-tuned that way, such as the demo model (pretokenize's `question_first`).
    question_first: bool = False
    question_twice: bool = False  # with question_first: the question again after the image
    # Where the vision tokenizer is, relative to this folder, when the folder holds only a decoder: an
    # understanding model (Emu3-Chat) exported beside its generation model shares that model's VQ ("..").
    vq_folder: str = ""
    # Text-to-image sampling for families of prompts, used where a call sets no guidance or sampling of
    # its own; the first entry that matches a prompt wins. The shipped demo model draws its digits at
    # guidance 1.5 and temperature 0.3 and its shapes scenes at 1.5 and 0.6 (`digits.DRAW_SAMPLING`).
    prompt_sampling: tuple[PromptSampling, ...] = ()

    @classmethod
    def read(cls, folder: str | Path) -> PipelineConfig:
        path = Path(folder) / PIPELINE_FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}")
        if raw.get("image_size") is not None:
            raw["image_size"] = tuple(raw["image_size"])
        try:
            raw["prompt_sampling"] = tuple(PromptSampling(**entry) for entry in raw.get("prompt_sampling", ()))
        except TypeError as err:  # an unknown or missing key in an entry
            raise ValueError(
                f"{path}: prompt_sampling entries hold pattern, guidance, temperature, top_k, min_p: {err}"
            ) from err
        return cls(**raw)

    def write(self, folder: str | Path) -> None:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["prompt_sampling"] = [asdict(entry) for entry in self.prompt_sampling]
        (Path(folder) / PIPELINE_FILE).write_text(json.dumps(data, indent=2) + "\n")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p)

    def for_prompt(self, prompt: str) -> tuple[float, SamplingConfig]:
        """(guidance, sampling) for a text-to-image prompt: its family's (`prompt_sampling`) or the defaults."""
        rule = next((r for r in self.prompt_sampling if r.matches(prompt)), None)
        if rule is None:
            return self.guidance, self.sampling()
        guidance = self.guidance if rule.guidance is None else rule.guidance
        return guidance, overlay(self.sampling(), temperature=rule.temperature, top_k=rule.top_k, min_p=rule.min_p)


@dataclass(frozen=True)
class Turn:
    """A chat turn for `Pipeline.chat`: user content mixes text and images ((H, W, 3) uint8 arrays)."""

    role: str
    content: tuple[str | np.ndarray, ...]


class Pipeline:
    def __init__(self, decoder: Emu3Decoder, vq: VQModel, tokenizer: TextTokenizer, cfg: PipelineConfig) -> None:
        special = tokenizer.special
        if special.vocab_size > decoder.cfg.vocab_size:
            raise ValueError(
                f"the tokenizer has {special.vocab_size} ids but the decoder only {decoder.cfg.vocab_size}: "
                "they do not belong to the same model"
            )
        if vq.cfg.codebook_size != special.codebook_size:
            raise ValueError(
                f"the vision tokenizer has {vq.cfg.codebook_size} codes but the text tokenizer "
                f"{special.codebook_size} visual tokens: they do not belong to the same model"
            )
        self.decoder, self.vq, self.tok, self.cfg = decoder.eval(), vq.eval(), tokenizer, cfg
        self.generator = Generator(decoder, VocabLayout(special.visual_start, special.codebook_size, special.pad,
                                                        special.eos))  # fmt: skip

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        vq_folder: str | Path | None = None,
        dtype: torch.dtype | str | None = "auto",
        vq_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Pipeline:
        """Decoder and tokenizer from `folder`; the VQ from `vq_folder`, else from the folder its pipeline
        defaults name (`PipelineConfig.vq_folder`, relative to `folder`), else from `folder` itself when it
        is a transformers Emu3ForConditionalGeneration (BAAI ships the VQ as a separate folder). The
        decoder's `dtype`: "auto" (bf16 where `device` runs it fast, else fp32), a torch dtype, or None
        (as stored)."""
        from emu3.convert.decoder import load_decoder
        from emu3.convert.vq import load_vision_tokenizer
        from emu3.model.precision import compute_dtype
        from emu3.tokens.text import load_text_tokenizer

        if isinstance(dtype, str):
            dtype = compute_dtype(dtype, device)

        cfg = PipelineConfig.read(folder)
        decoder = load_decoder(folder, dtype=dtype, device=device)
        vq_source = vq_folder or (Path(folder) / cfg.vq_folder if cfg.vq_folder else folder)
        vq = load_vision_tokenizer(vq_source, dtype=vq_dtype, device=device)
        return cls(decoder, vq, load_text_tokenizer(folder), cfg)

    def save(self, folder: str | Path) -> Path:
        """One folder with everything `Pipeline.load` needs: a transformers Emu3ForConditionalGeneration
        (decoder + VQ), the tokenizer files and the generation defaults."""
        from emu3.convert.decoder import save_decoder, vocabulary_map
        from emu3.convert.vq import vq_config_to_hf, vq_state_dict_to_hf

        s = self.tok.special
        names = {i: self.tok.special_name(i) for i in range(s.pad, s.visual_start)}
        save_decoder(
            self.decoder, folder, bos_id=s.bos, eos_id=s.eos, pad_id=s.pad, vq_state=vq_state_dict_to_hf(self.vq),
            vq_config=vq_config_to_hf(self.vq.cfg), vocabulary_map=vocabulary_map(names, s.visual_start,
                                                                                  s.codebook_size),
        )  # fmt: skip
        self.tok.save(folder)
        self.cfg.write(folder)
        return Path(folder)

    # ------------------------------------------------------------ images

    def latent_size(self, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Latent (h, w) for a pixel size, or for the configured / trained image area."""
        factor, multiple = self.vq.cfg.spatial_factor, self.vq.cfg.pixel_multiple
        size = image_size or self.cfg.image_size
        if size is None:
            h, w = templates.generation_size("1:1", self.decoder.cfg.image_area, factor)
            size = (h * factor, w * factor)
        h, w = size
        if h % multiple or w % multiple or h <= 0 or w <= 0:
            raise ValueError(f"image size {h}x{w} must be a positive multiple of {multiple} in both sides")
        return h // factor, w // factor

    @torch.inference_mode()
    def text_to_image(
        self,
        prompts: str | Sequence[str],
        *,
        image_size: tuple[int, int] | None = None,
        num_images: int = 1,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> list[np.ndarray]:
        """`num_images` images per prompt, as (H, W, 3) uint8, in prompt order."""
        codes = self.text_to_image_codes(prompts, image_size=image_size, num_images=num_images, guidance=guidance,
                                         negative_prompt=negative_prompt, sampling=sampling, seed=seed,
                                         progress=progress)  # fmt: skip
        return self.decode_images(codes)

    @torch.inference_mode()
    def text_to_image_codes(
        self,
        prompts: str | Sequence[str],
        *,
        image_size: tuple[int, int] | None = None,
        num_images: int = 1,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> Tensor:
        """The sampled visual codes behind `text_to_image`, (N, h, w), before the VQ decodes them: what
        preference data should hold (decoding and re-encoding an image need not give back its codes).
        Where `guidance` or `sampling` is None, each prompt takes its family's (`cfg.prompt_sampling`) or
        the defaults; prompts sampled alike are generated together, one batch per kind."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        h, w = self.latent_size(image_size)
        cond = [templates.t2i_prompt(p, h, w, self.tok, positive_suffix=self.cfg.positive_suffix) for p in prompts]
        neg = templates.t2i_negative_prompt(h, w, self.tok, negative_prompt or self.cfg.negative_prompt)
        plan, prefix = image_plan(h, w, *self.grid_ids()), fmt.image_prefix(h, w, self.tok)
        groups: dict[tuple, list[int]] = {}  # (guidance, sampling) -> prompt indices, in first-seen order
        for i, prompt in enumerate(prompts):
            g, s = self.cfg.for_prompt(prompt)
            groups.setdefault((g if guidance is None else guidance, s if sampling is None else sampling), []).append(i)
        codes: list[Tensor | None] = [None] * (len(prompts) * num_images)
        for (g, s), members in groups.items():
            rows = [cond[i] for i in members for _ in range(num_images)]
            out = self._generate(rows, [plan] * len(rows), neg, g, s, seed, progress)
            slots = [i * num_images + k for i in members for k in range(num_images)]
            for slot, row in zip(slots, out, strict=True):
                codes[slot] = self.parse_vision(prefix, row, fmt.Image)
        return torch.stack(codes)

    def encode_images(self, images: Sequence[np.ndarray]) -> list[Tensor]:
        """(H, W, 3) uint8 images -> list of (h, w) codes (each image encoded alone, as BAAI does)."""
        from emu3.vision.image_io import to_pixels

        out = []
        for image in images:
            pixels = to_pixels(image, self.vq.cfg.pixel_multiple).to(self._vq_device(), self._vq_dtype())
            out.append(self.vq.encode_image(pixels[None])[0].cpu())
        return out

    def decode_images(self, codes: Tensor) -> list[np.ndarray]:
        """(B, h, w) codes -> list of (H, W, 3) uint8. On a CPU, decoded CPU_VQ_BATCH at a time: the same
        pixels (each image's decoding does not depend on its batch), faster (measured at 72 px: 20 ms an
        image in eights, 34 ms in batches of 32, whose activations outgrow the caches)."""
        from emu3.vision.image_io import to_uint8

        device = self._vq_device()
        step = CPU_VQ_BATCH if device.type == "cpu" else max(1, len(codes))
        out = []
        for i in range(0, len(codes), step):
            pixels = self.vq.decode_image(codes[i : i + step].to(device))
            out += [to_uint8(p) for p in pixels.float().cpu()]
        return out

    # ------------------------------------------------------------ video

    @torch.inference_mode()
    def text_to_video(
        self, prompt: str, *, frames: int | None = None, image_size: tuple[int, int] | None = None,
        guidance: float | None = None, sampling: SamplingConfig | None = None, seed: int | None = None,
        context_frames: int | None = None, progress: Progress | None = None,
    ) -> np.ndarray:  # fmt: skip
        """(T, H, W, 3) uint8 frames; `frames` counts latent frames (each decodes to several). More than
        fit in the model's context are made in windows, as `extend_video` continues a clip."""
        return self.extend_video(None, prompt, new_frames=frames or self.cfg.video_frames, image_size=image_size,
                                 guidance=guidance, sampling=sampling, seed=seed, context_frames=context_frames,
                                 progress=progress)  # fmt: skip

    @torch.inference_mode()
    def extend_video(
        self, frames: np.ndarray | None, prompt: str, *, new_frames: int, image_size: tuple[int, int] | None = None,
        guidance: float | None = None, sampling: SamplingConfig | None = None, seed: int | None = None,
        context_frames: int | None = None, progress: Progress | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Continue a clip by next-token prediction of `new_frames` further latent frames.

        `frames` (T, H, W, 3) uint8, T a multiple of the VQ's temporal factor; None starts from nothing.
        Returns the given frames, unchanged, followed by the new ones.

        A clip and its continuation longer than the model's context are made in windows: each window
        reads the latest `context_frames` latent frames (default: as many as fit beside one new frame),
        re-encoded from pixels, and writes as many new ones as fit after them. Window k samples with
        seed + k. When everything fits, there is one window holding the whole clip."""
        if new_frames <= 0:
            raise ValueError(f"new_frames must be positive, got {new_frames}")
        t, f = self.vq.cfg.temporal_downsample_factor, self.vq.cfg.spatial_factor
        given = np.zeros((0, 0, 0, 3), np.uint8) if frames is None else self.vq_sized(frames)
        if len(given) % t:
            raise ValueError(f"a clip to extend needs a multiple of {t} frames, got {len(given)}")
        h, w = (given.shape[1] // f, given.shape[2] // f) if len(given) else self.latent_size(image_size)
        text = [self.tok.special.bos, *self.tok.encode(prompt + self.cfg.positive_suffix)]
        neg_text = [self.tok.special.bos, *self.tok.encode(self.cfg.negative_prompt)]
        most = self.video_window(max(len(text), len(neg_text)), h, w)
        if most < 1:
            raise ValueError(f"the prompt ({len(text)} tokens) leaves no room for one {h}x{w} latent frame in the "
                             f"model's context of {self.decoder.cfg.max_seq_len}; shorten it")  # fmt: skip
        if context_frames is not None and not 0 < context_frames < most:
            raise ValueError(f"context_frames must be in 1..{most - 1} (the model's context holds {most} "
                             f"{h}x{w} latent frames beside this prompt), got {context_frames}")  # fmt: skip
        made: list[np.ndarray] = []
        for window, (ctx, step) in enumerate(video_windows(len(given) // t, new_frames, most, context_frames)):
            clip = np.concatenate([x for x in (given, *made) if len(x)])[-ctx * t :] if ctx else None
            made.append(self._continue_clip(clip, text, neg_text, step, (h, w), guidance, sampling,
                                           None if seed is None else seed + window, progress))  # fmt: skip
        return np.concatenate([given, *made]) if len(given) else np.concatenate(made)

    def vq_sized(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 frames resized (bicubic) to the sides the VQ takes, as `to_pixels` would."""
        from emu3.vision.image_io import resize_to_multiple

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {tuple(frames.shape)}")
        return np.stack([resize_to_multiple(x, self.vq.cfg.video_pixel_multiple) for x in frames])

    def video_window(self, text_tokens: int, h: int, w: int, max_len: int | None = None) -> int:
        """The most latent frames (given and new) of an h x w video that fit in the model's context (or
        `max_len` tokens, if less) after a prompt of `text_tokens` tokens: header, rows with EOL, EOF per
        frame, EOI and EOS."""
        frame, limit = h * (w + 1) + 1, min(self.decoder.cfg.max_seq_len, max_len or self.decoder.cfg.max_seq_len)
        n = 0
        while text_tokens + len(fmt.video_prefix(n + 1, h, w, self.tok)) + (n + 1) * frame + 2 <= limit:
            n += 1
        return n

    def _continue_clip(self, clip, text, neg_text, new_frames, hw, guidance, sampling, seed, progress) -> np.ndarray:
        """The pixel frames of `new_frames` latent frames continuing `clip` (None: from nothing)."""
        h, w = hw
        context = self.video_context(clip, new_frames, h, w)
        plan = video_plan(new_frames, h, w, *self.grid_ids())
        out = self._generate([text + context], [plan], neg_text + context, guidance, sampling, seed, progress)[0]
        codes = self.parse_vision(context, out, fmt.Video)
        return self.decode_video(codes)[-new_frames * self.vq.cfg.temporal_downsample_factor :]

    def video_context(self, clip: np.ndarray | None, new_frames: int, h: int, w: int) -> list[int]:
        """What a video window's prompt ends with, after the text: the header of a video of the clip's
        latent frames plus `new_frames`, then the clip's codes (`clip`: pixel frames, None for none)."""
        if clip is None:
            return fmt.video_prefix(new_frames, h, w, self.tok)
        given = self.encode_video(clip)  # (t, h, w)
        body = fmt.video_block(given, self.tok)[len(fmt.video_prefix(*given.shape, self.tok)) : -1]
        return fmt.video_prefix(given.shape[0] + new_frames, h, w, self.tok) + body

    def encode_video(self, frames: np.ndarray) -> Tensor:
        """(T, H, W, 3) uint8 -> (t, h, w) codes."""
        from emu3.vision.image_io import to_pixels

        pixels = torch.stack([to_pixels(f, self.vq.cfg.video_pixel_multiple) for f in frames])
        return self.vq.encode_video(pixels[None].to(self._vq_device(), self._vq_dtype()))[0].cpu()

    def decode_video(self, codes: Tensor) -> np.ndarray:
        from emu3.vision.image_io import to_uint8

        frames = self.vq.decode_video(codes[None].to(self._vq_device()))[0]
        return np.stack([to_uint8(f) for f in frames.float().cpu()])

    # ------------------------------------------------------------ understanding

    @torch.inference_mode()
    def chat(
        self, turns: Sequence[Turn], *, max_new_tokens: int | None = None, sampling: SamplingConfig | None = None,
        seed: int | None = None, progress: Progress | None = None,
    ) -> str:  # fmt: skip
        """The assistant's next answer to a conversation that ends with a user turn (greedy by default)."""
        messages = [templates.Message(t.role, self.reading_order(tuple(self._content(c) for c in t.content)))
                    for t in turns]  # fmt: skip
        prompt = templates.chat_prompt(messages, self.tok, system=self.cfg.system)
        return self._answer(prompt, max_new_tokens, sampling, seed, progress)

    def ask(self, image: np.ndarray, question: str, **kwargs) -> str:
        """One question about one image."""
        return self.chat([Turn("user", (image, question))], **kwargs)

    @torch.inference_mode()
    def ask_batch(self, images: Sequence[np.ndarray], questions: Sequence[str], **kwargs) -> list[str]:
        """One question per image, answered together in one left-padded batch (greedy by default)."""
        prompts = self.question_prompts(images, questions)
        return self._answers(prompts, kwargs.pop("max_new_tokens", None), **kwargs)

    @torch.inference_mode()
    def question_prompts(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[list[int]]:
        """The ids `ask_batch` answers after: one user turn per image and question, in the model's
        reading order, up to and including the assistant's tag."""
        if len(images) != len(questions):
            raise ValueError(f"got {len(images)} images but {len(questions)} questions")
        turns = [[templates.Message("user", self.reading_order((fmt.Image(c), q)))]
                 for c, q in zip(self.encode_images(images), questions, strict=True)]  # fmt: skip
        return [templates.chat_prompt(t, self.tok, system=self.cfg.system) for t in turns]

    def caption(self, image: np.ndarray, **kwargs) -> str:
        """A caption in the pretraining understanding layout: BOS <image> -> caption."""
        return self.caption_batch([image], **kwargs)[0]

    @torch.inference_mode()
    def caption_batch(self, images: Sequence[np.ndarray], **kwargs) -> list[str]:
        """Captions of several images in one batch."""
        prompts = [[self.tok.special.bos, *fmt.image_block(c, self.tok)] for c in self.encode_images(images)]
        return self._answers(prompts, kwargs.pop("max_new_tokens", None), **kwargs)

    def _answer(self, prompt, max_new_tokens, sampling=None, seed=None, progress=None) -> str:
        return self._answers([prompt], max_new_tokens, sampling, seed, progress)[0]

    def _answers(self, prompts, max_new_tokens, sampling=None, seed=None, progress=None) -> list[str]:
        plan = text_plan(max_new_tokens or self.cfg.max_answer_tokens)
        sampling = sampling or SamplingConfig(temperature=0)
        out = self.generator.generate(prompts, [plan] * len(prompts), sampling=sampling, seed=seed,
                                      callback=_step_progress(progress, plan.numel()))  # fmt: skip
        return [self.tok.decode(row[: int(n)].tolist()).strip() for row, n in zip(out.tokens, out.lengths, strict=True)]

    def reading_order(self, content: tuple) -> tuple:
        """A turn's items in the order the model reads them: as given, or text first (`question_first`)."""
        if not self.cfg.question_first:
            return content
        text = tuple(c for c in content if isinstance(c, str))
        return text + tuple(c for c in content if not isinstance(c, str)) + (text if self.cfg.question_twice else ())

    def _content(self, item: str | np.ndarray) -> str | fmt.Image:
        if isinstance(item, str):
            return item
        return fmt.Image(self.encode_images([item])[0])

    # ------------------------------------------------------------ helpers

    def grid_ids(self) -> tuple[int, int, int, int]:
        """The ids a grid plan (generate.constraints.image_plan / video_plan) closes rows, frames, the
        visual block and the sequence with: end of line, end of frame, end of image, end of sequence."""
        s = self.tok.special
        return s.eol, s.eof, s.eoi, s.eos

    def _generate(self, rows, plans, negative, guidance, sampling, seed, progress) -> list[list[int]]:
        g = self.cfg.guidance if guidance is None else guidance
        negatives = [negative] * len(rows) if g != 1.0 else None
        out = self.generator.generate(
            rows,
            plans,
            negative_prompts=negatives,
            guidance=g,
            sampling=sampling or self.cfg.sampling(),
            seed=seed,
            callback=_step_progress(progress, max(p.numel() for p in plans)),
        )
        return [row[: int(n)].tolist() for row, n in zip(out.tokens, out.lengths, strict=True)]

    def parse_vision(self, prefix: list[int], generated: list[int], kind: type) -> Tensor:
        """The codes of the one `kind` (tokens.format.Image or Video) that `prefix + generated` (minus a
        final EOS) spells; FormatError when it spells none or several."""
        ids = prefix + generated
        if ids and ids[-1] == self.tok.special.eos:
            ids = ids[:-1]
        segments = fmt.parse(ids, self.tok)
        found = [s for s in segments if isinstance(s, kind)]
        if len(found) != 1:
            raise fmt.FormatError(f"expected one {kind.__name__} in the generated tokens, found {len(found)}")
        return found[0].codes

    def _vq_device(self) -> torch.device:
        return next(self.vq.parameters()).device

    def _vq_dtype(self) -> torch.dtype:
        return next(self.vq.parameters()).dtype

    def with_config(self, **changes) -> Pipeline:
        """The same models with other generation defaults."""
        return Pipeline(self.decoder, self.vq, self.tok, replace(self.cfg, **changes))


def _step_progress(progress: Progress | None, total: int):
    if progress is None:
        return None
    return lambda step, _tokens: progress(step + 1, total)
