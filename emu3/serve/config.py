"""ServeConfig: where the server listens, how big its batch is, and every request limit it enforces.

Kept free of FastAPI imports so the command line can build it without the serve extra.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Anything beyond is a 4xx naming the field, never a slow 500."""

    max_body_bytes: int = 8 * 1024 * 1024  # 413 beyond
    max_prompt_chars: int = 8000
    max_prompt_tokens: int = 2048  # after tokenization, images in chat included
    max_image_area: int | None = None  # pixels; None: the decoder's trained image area
    max_images: int = 8  # `n`
    min_guidance: float = 1.0
    max_guidance: float = 20.0
    max_answer_tokens: int = 1024  # chat `max_tokens`
    max_messages: int = 64
    max_input_images: int = 4  # images in one chat request
    max_video_frames: int = 8  # latent frames to generate
    max_input_frames: int = 64  # frames of a video to extend
    max_partial_images: int = 64
    request_timeout_s: float = 600.0  # 504 beyond

    def __post_init__(self) -> None:
        if not 0 < self.min_guidance <= self.max_guidance:
            raise ValueError(f"need 0 < min_guidance <= max_guidance, got {self.min_guidance}, {self.max_guidance}")
        numbers = [self.max_body_bytes, self.max_prompt_chars, self.max_prompt_tokens, self.max_images,
                   self.max_answer_tokens, self.max_messages, self.max_video_frames, self.max_input_frames]  # fmt: skip
        if min(numbers) < 1:
            raise ValueError(f"every limit must be positive: {self}")


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback unless asked otherwise
    port: int = 8000
    api_key: str | None = None  # when set, /v1/* needs `Authorization: Bearer <key>`
    max_batch: int = 16  # decode-batch rows (a guided image takes two: prompt and negative prompt)
    max_queue: int = 64  # requests waiting for a row; 429 beyond
    max_len: int | None = None  # slots per row (prompt + new tokens); None: the model's context
    model_name: str = "emu3"
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError(f"--max-batch and --queue must be >= 1, got {self.max_batch} and {self.max_queue}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"--port must be in [0, 65535], got {self.port}")
