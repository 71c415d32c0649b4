"""From validated API requests to scheduler Requests, and from generated tokens back to media.

Each task has a `*_job` function (checks the configurable limits, builds prompts and plans with the
pipeline's tokenizer and templates, encodes input images / clips with its VQ) and a `finish_*`
function (tokens -> image / text / clip). They are plain, blocking functions: the HTTP layer runs
them in a thread, the scheduler runs the token generation in between.

The prompts are the ones Pipeline builds (same templates, suffixes and negative prompts), so a
server answer equals `Pipeline.text_to_image` / `chat` / `extend_video` for the same seed up to the
batching of images (here image i of a request is its own request, seeded with seed + i). A video
longer than the model's context is made in windows, as `Pipeline.extend_video` makes it: `plan_video`
checks the request and lays out the windows, `window_job` builds each one from the frames so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emu3.generate.constraints import image_plan, text_plan, video_plan
from emu3.generate.pipeline import Pipeline, video_windows
from emu3.generate.sampling import SamplingConfig, overlay
from emu3.generate.scheduler import Request
from emu3.serve import media
from emu3.serve.config import Limits
from emu3.serve.errors import APIError, invalid
from emu3.serve.schemas import ChatCompletionRequest, ImageGenerationRequest, Sampling, VideoGenerationRequest
from emu3.tokens import format as fmt
from emu3.tokens import templates


@dataclass
class ImageJob:
    requests: list[Request]  # one per image
    height: int  # latent rows
    width: int  # latent columns
    prefix: list[int]  # BOI "h*w" IMG: what precedes the generated tokens
    size: str  # pixels, "WxH"


@dataclass
class ChatJob:
    request: Request
    prompt_tokens: int


@dataclass
class VideoPlan:
    """A checked video request: its prompts, sampling and windows ((context, new) latent frames each)."""

    text: list[int]  # BOS + prompt
    negative: list[int]  # BOS + negative prompt
    size: tuple[int, int]  # latent rows, columns
    windows: list[tuple[int, int]]
    guidance: float
    sampling: SamplingConfig
    seed: int | None
    fps: int
    given: np.ndarray | None = None  # the given frames as encoded (T, H, W, 3), returned before the new ones


@dataclass
class VideoJob:
    request: Request
    prefix: list[int]  # video header and the context frames' tokens
    new_frames: int  # latent frames this window writes


# ---------------------------------------------------------------- images


def image_job(pipe: Pipeline, limits: Limits, body: ImageGenerationRequest, max_len: int) -> ImageJob:
    if len(body.prompt) > limits.max_prompt_chars:
        raise invalid("prompt", f"longer than {limits.max_prompt_chars} characters", "string_above_max_length")
    if body.stream and body.n != 1:
        raise invalid("n", "streaming returns one image: use n = 1 with stream = true")
    if body.partial_images > limits.max_partial_images:
        raise invalid("partial_images", f"at most {limits.max_partial_images}")
    h, w = _latent_size(pipe, limits, body.size)
    tok = pipe.tok
    cond = _encoded("prompt", templates.t2i_prompt, body.prompt, h, w, tok, positive_suffix=pipe.cfg.positive_suffix)
    neg = _encoded("negative_prompt", templates.t2i_negative_prompt, h, w, tok, _negative(pipe, limits, body))
    family_guidance, family_sampling = pipe.cfg.for_prompt(body.prompt)  # the prompt's family's defaults
    guidance = _guidance(family_guidance, limits, body)
    plan = image_plan(h, w, *pipe.grid_ids())
    _check_length("prompt", [cond, neg], plan.numel(), limits, max_len)
    sampling = _sampling(family_sampling, body)
    requests = [
        Request(cond, plan, negative_prompt=neg if guidance != 1.0 else None, guidance=guidance, sampling=sampling,
                seed=None if body.seed is None else (body.seed + i) % (2**63))
        for i in range(body.n)
    ]  # fmt: skip
    factor = pipe.vq.cfg.spatial_factor
    return ImageJob(requests, h, w, fmt.image_prefix(h, w, tok), f"{w * factor}x{h * factor}")


@torch.inference_mode()
def finish_image(pipe: Pipeline, job: ImageJob, tokens: list[int]) -> np.ndarray:
    ids = job.prefix + (tokens[:-1] if tokens and tokens[-1] == pipe.tok.special.eos else tokens)
    images = [s for s in fmt.parse(ids, pipe.tok) if isinstance(s, fmt.Image)]
    if len(images) != 1:
        raise fmt.FormatError(f"expected one image in the generated tokens, found {len(images)}")
    return pipe.decode_images(images[0].codes[None])[0]


@torch.inference_mode()
def partial_image(pipe: Pipeline, job: ImageJob, tokens: list[int]) -> np.ndarray:
    """The image so far: finished rows decoded, the rows still to come greyed out."""
    rows = min(len(tokens) // (job.width + 1), job.height)
    codes = torch.zeros(job.height, job.width, dtype=torch.long)
    if rows:
        grid = torch.tensor(tokens[: rows * (job.width + 1)]).view(rows, job.width + 1)[:, : job.width]
        codes[:rows] = (grid - pipe.tok.special.visual_start).clamp(0, pipe.tok.special.codebook_size - 1)
    image = pipe.decode_images(codes[None])[0].copy()
    image[rows * image.shape[0] // job.height :] = 128
    return image


# ---------------------------------------------------------------- chat


def chat_job(pipe: Pipeline, limits: Limits, body: ChatCompletionRequest, max_len: int) -> ChatJob:
    if len(body.messages) > limits.max_messages:
        raise invalid("messages", f"at most {limits.max_messages} messages")
    system, turns = _turns(pipe, limits, body)
    system = system if system is not None else pipe.cfg.system
    prompt = _encoded("messages", templates.chat_prompt, turns, pipe.tok, system=system)
    max_new = body.max_completion_tokens or body.max_tokens or min(pipe.cfg.max_answer_tokens, limits.max_answer_tokens)
    if max_new > limits.max_answer_tokens:
        raise invalid("max_tokens", f"at most {limits.max_answer_tokens}")
    plan = text_plan(max_new)
    _check_length("messages", [prompt], plan.numel(), limits, max_len)
    sampling = SamplingConfig(temperature=body.temperature or 0.0, top_p=body.top_p or 1.0, top_k=body.top_k or 0,
                              min_p=body.min_p or 0.0)  # fmt: skip
    return ChatJob(Request(prompt, plan, sampling=sampling, seed=body.seed), len(prompt))


def answer_text(pipe: Pipeline, tokens: list[int]) -> str:
    if tokens and tokens[-1] == pipe.tok.special.eos:
        tokens = tokens[:-1]
    return pipe.tok.decode(tokens).strip()


def _turns(pipe: Pipeline, limits: Limits, body: ChatCompletionRequest):
    system_parts, turns, n_images = [], [], 0
    for i, message in enumerate(body.messages):
        parts = [message.content] if isinstance(message.content, str) else message.content
        if message.role == "system":
            if turns:
                raise invalid(f"messages[{i}].role", "system messages must come before the conversation")
            system_parts.append(_text_only(parts, f"messages[{i}].content"))
            continue
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if message.role != expected:
            raise invalid(f"messages[{i}].role", f"expected a {expected} message (turns alternate user, assistant)")
        if message.role == "assistant":
            turns.append(templates.Message("assistant", (_text_only(parts, f"messages[{i}].content"),)))
            continue
        content = []
        for j, part in enumerate(parts):
            if isinstance(part, str) or part.type == "text":
                content.append(part if isinstance(part, str) else part.text)
                continue
            n_images += 1
            if n_images > limits.max_input_images:
                raise invalid(f"messages[{i}].content[{j}]", f"at most {limits.max_input_images} images per request")
            content.append(_image(pipe, limits, part.image_url.url, f"messages[{i}].content[{j}].image_url.url"))
        turns.append(templates.Message("user", pipe.reading_order(tuple(content))))
    if not turns or turns[-1].role != "user":
        raise invalid("messages", "the conversation must end with a user message")
    return (" ".join(system_parts) if system_parts else None), turns


def _text_only(parts, param: str) -> str:
    if any(not isinstance(p, str) and p.type != "text" for p in parts):
        raise invalid(param, "only user messages may hold images")
    return "".join(p if isinstance(p, str) else p.text for p in parts)


@torch.inference_mode()
def _image(pipe: Pipeline, limits: Limits, url: str, param: str) -> fmt.Image:
    try:
        image = media.read_image(media.decode_data_uri(url, media.IMAGE_TYPES))
    except media.MediaError as err:
        raise invalid(param, str(err), "invalid_image") from None
    factor = pipe.vq.cfg.pixel_multiple
    image = media.fit_area(image, _max_area(pipe, limits))
    if min(image.shape[:2]) < factor:
        raise invalid(param, f"the image must be at least {factor}x{factor} pixels", "invalid_image")
    return fmt.Image(pipe.encode_images([image])[0])


# ---------------------------------------------------------------- video


def plan_video(pipe: Pipeline, limits: Limits, body: VideoGenerationRequest, max_len: int) -> VideoPlan:
    if len(body.prompt) > limits.max_prompt_chars:
        raise invalid("prompt", f"longer than {limits.max_prompt_chars} characters", "string_above_max_length")
    new = body.frames or pipe.cfg.video_frames
    if new > limits.max_video_frames:
        raise invalid("frames", f"at most {limits.max_video_frames} latent frames")
    given = None if body.video is None else _given_frames(pipe, limits, body.video)
    f = pipe.vq.cfg.spatial_factor
    h, w = (given.shape[1] // f, given.shape[2] // f) if given is not None else _latent_size(pipe, limits, body.size)
    tok = pipe.tok
    text = [tok.special.bos, *_encoded("prompt", tok.encode, body.prompt + pipe.cfg.positive_suffix)]
    negative = [tok.special.bos, *_encoded("negative_prompt", tok.encode, _negative(pipe, limits, body))]
    longest = max(len(text), len(negative))
    if longest > limits.max_prompt_tokens:
        raise APIError(400, f"prompt: the prompt has {longest} tokens; the limit is {limits.max_prompt_tokens}",
                       param="prompt", code="context_length_exceeded")  # fmt: skip
    most = pipe.video_window(longest, h, w, max_len)
    if most < 1:
        raise APIError(400, f"prompt: {longest} prompt tokens leave no room for one {h}x{w} latent frame in the "
                       f"context of {max_len}", param="prompt", code="context_length_exceeded")  # fmt: skip
    have = 0 if given is None else len(given) // pipe.vq.cfg.temporal_downsample_factor
    return VideoPlan(text, negative, (h, w), video_windows(have, new, most), _guidance(pipe.cfg.guidance, limits, body),
                     _sampling(pipe.cfg.sampling(), body), body.seed, body.fps, given)  # fmt: skip


def clip_so_far(plan: VideoPlan, made: list[np.ndarray]) -> np.ndarray:
    """The given frames (if any), then the new frames of the windows `made` so far."""
    return np.concatenate([f for f in (plan.given, *made) if f is not None])


@torch.inference_mode()
def window_job(pipe: Pipeline, plan: VideoPlan, k: int, made: list[np.ndarray]) -> VideoJob:
    """Window k of `plan`: its context frames are the latest of the given frames and the new ones `made`
    by the windows before it (re-encoded from pixels, as the pipeline does); seeded with seed + k."""
    ctx, new = plan.windows[k]
    (h, w), t = plan.size, pipe.vq.cfg.temporal_downsample_factor
    prefix = pipe.video_context(clip_so_far(plan, made)[-ctx * t :] if ctx else None, new, h, w)
    guided = plan.guidance != 1.0
    request = Request(plan.text + prefix, video_plan(new, h, w, *pipe.grid_ids()), sampling=plan.sampling,
                      guidance=plan.guidance, negative_prompt=plan.negative + prefix if guided else None,
                      seed=None if plan.seed is None else plan.seed + k)  # fmt: skip
    return VideoJob(request, prefix, new)


@torch.inference_mode()
def finish_video(pipe: Pipeline, job: VideoJob, tokens: list[int]) -> np.ndarray:
    """The new frames of one window, decoded."""
    ids = job.prefix + (tokens[:-1] if tokens and tokens[-1] == pipe.tok.special.eos else tokens)
    videos = [s for s in fmt.parse(ids, pipe.tok) if isinstance(s, fmt.Video)]
    if len(videos) != 1:
        raise fmt.FormatError(f"expected one video in the generated tokens, found {len(videos)}")
    return pipe.decode_video(videos[0].codes)[-job.new_frames * pipe.vq.cfg.temporal_downsample_factor :]


@torch.inference_mode()
def _given_frames(pipe: Pipeline, limits: Limits, video: str) -> np.ndarray:
    """The clip of a request, its oldest frames dropped to whole groups of the VQ's temporal factor, at
    the sides the VQ takes."""
    try:
        data = media.decode_data_uri(video, {"image/gif": "GIF"}) if video.startswith("data:") else None
        frames = media.read_gif(data if data is not None else media.decode_base64(video))
    except media.MediaError as err:
        raise invalid("video", str(err), "invalid_video") from None
    if len(frames) > limits.max_input_frames:
        raise invalid("video", f"at most {limits.max_input_frames} frames")
    step = pipe.vq.cfg.temporal_downsample_factor
    keep = len(frames) - len(frames) % step  # the VQ encodes whole groups of frames: drop the oldest extra
    if keep == 0:
        raise invalid("video", f"needs at least {step} frames", "invalid_video")
    return pipe.vq_sized(np.stack([media.fit_area(f, _max_area(pipe, limits)) for f in frames[len(frames) - keep :]]))


# ---------------------------------------------------------------- shared checks


def _latent_size(pipe: Pipeline, limits: Limits, size: str) -> tuple[int, int]:
    factor = pipe.vq.cfg.pixel_multiple
    if size == "auto":
        return pipe.latent_size()
    width, height = (int(x) for x in size.split("x"))
    if width % factor or height % factor or width == 0 or height == 0:
        raise invalid("size", f"width and height must be positive multiples of {factor} pixels, got {size}")
    if width * height > _max_area(pipe, limits):
        raise invalid("size", f"{size} is larger than the limit of {_max_area(pipe, limits)} pixels")
    return pipe.latent_size((height, width))


def _max_area(pipe: Pipeline, limits: Limits) -> int:
    return limits.max_image_area or pipe.decoder.cfg.image_area


def _guidance(default: float, limits: Limits, body: Sampling) -> float:
    g = default if body.guidance_scale is None else body.guidance_scale
    if not limits.min_guidance <= g <= limits.max_guidance:
        raise invalid("guidance_scale", f"must lie in [{limits.min_guidance}, {limits.max_guidance}]")
    return g


def _negative(pipe: Pipeline, limits: Limits, body: Sampling) -> str:
    if body.negative_prompt is not None and len(body.negative_prompt) > limits.max_prompt_chars:
        raise invalid("negative_prompt", f"longer than {limits.max_prompt_chars} characters")
    return pipe.cfg.negative_prompt if body.negative_prompt is None else body.negative_prompt


def _sampling(default: SamplingConfig, body: Sampling) -> SamplingConfig:
    return overlay(default, temperature=body.temperature, top_k=body.top_k, min_p=body.min_p)


def _check_length(param: str, prompts: list[list[int]], new_tokens: int, limits: Limits, max_len: int) -> None:
    longest = max(len(p) for p in prompts)
    if longest > limits.max_prompt_tokens:
        raise APIError(400, f"{param}: the prompt has {longest} tokens; the limit is {limits.max_prompt_tokens}",
                       param=param, code="context_length_exceeded")  # fmt: skip
    if longest + new_tokens > max_len:
        raise APIError(400, f"{param}: {longest} prompt tokens + {new_tokens} new tokens exceed the context of "
                       f"{max_len}", param=param, code="context_length_exceeded")  # fmt: skip


def _encoded(param: str, fn, *args, **kwargs) -> list[int]:
    """Tokenize user text; the tokenizer refuses special-token strings in it, which is the client's error."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        raise invalid(param, str(err)) from None
