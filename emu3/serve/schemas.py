"""Request and response bodies of the HTTP API, in OpenAI's shapes, as pydantic models.

The models carry the structural rules (types, enums, n <= 8, unknown fields forbidden) and so document
the API in /docs; the configurable limits (serve/config.py) are checked where requests become jobs
(serve/tasks.py). Extensions to OpenAI's fields are marked "extension" in their descriptions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_IMAGES = 8
SIZE_PATTERN = r"^(auto|[0-9]{1,5}x[0-9]{1,5})$"
SEED_MAX = 2**63 - 1


class APIModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Sampling(APIModel):
    """Fields shared by the generation requests (all extensions)."""

    negative_prompt: str | None = Field(None, description="extension: what the image should not look like")
    guidance_scale: float | None = Field(None, gt=0, description="extension: classifier-free guidance (1 = off)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="extension: sampling seed (image i uses seed + i)")
    temperature: float | None = Field(None, ge=0, le=10, description="extension: sampling temperature (0 = greedy)")
    top_k: int | None = Field(None, ge=0, le=1_000_000, description="extension: top-k sampling (0 = off)")
    min_p: float | None = Field(None, ge=0, le=1, description="extension: min-p on the unguided distribution (0 = off)")


# ---------------------------------------------------------------- images


class ImageGenerationRequest(Sampling):
    prompt: str = Field(min_length=1, description="what to draw")
    model: str | None = Field(None, description="accepted for compatibility; the server picks its model")
    n: int = Field(1, ge=1, le=MAX_IMAGES, description="images to generate")
    size: str = Field("auto", pattern=SIZE_PATTERN, description="WIDTHxHEIGHT in pixels, or auto")
    response_format: Literal["b64_json"] = Field("b64_json", description="only b64_json: no URLs are hosted")
    output_format: Literal["png"] = "png"
    user: str | None = None
    stream: bool = Field(False, description="server-sent events: progress, partial images, then the image (n = 1)")
    partial_images: int = Field(0, ge=0, description="partial images to stream while the rows fill in")


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class ImageGenerationResponse(BaseModel):
    created: int
    data: list[ImageData]
    size: str
    output_format: Literal["png"] = "png"


# ---------------------------------------------------------------- chat


class ImageURL(APIModel):
    url: str = Field(description="a data URI: data:image/png;base64,... or data:image/jpeg;base64,...")
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(APIModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> ContentPart:
        if self.type == "text" and (self.text is None or self.image_url is not None):
            raise ValueError("a 'text' part needs `text` and no `image_url`")
        if self.type == "image_url" and (self.image_url is None or self.text is not None):
            raise ValueError("an 'image_url' part needs `image_url` and no `text`")
        return self


class ChatMessage(APIModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(APIModel):
    include_usage: bool = False


class ChatCompletionRequest(APIModel):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="default 0: greedy answers")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000, description="extension: top-k sampling (0 = off)")
    min_p: float | None = Field(None, ge=0, le=1, description="extension: min-p sampling (0 = off)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    n: int = Field(1, ge=1, le=1, description="one answer per request")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


# ---------------------------------------------------------------- video (ours)


class VideoGenerationRequest(Sampling):
    prompt: str = Field(min_length=1, description="what happens in the clip")
    model: str | None = None
    frames: int | None = Field(None, ge=1, description="latent frames to generate (each decodes to several)")
    size: str = Field("auto", pattern=SIZE_PATTERN, description="WIDTHxHEIGHT; ignored when `video` is given")
    video: str | None = Field(None, description="a clip to extend: base64 GIF, or a data:image/gif;base64 URI")
    fps: int = Field(8, ge=1, le=60, description="frame rate of the returned GIF")
    response_format: Literal["b64_json"] = "b64_json"
    stream: bool = Field(False, description="server-sent events: progress per latent frame, the clip so far "
                                            "after each window but the last, then the clip")  # fmt: skip


class VideoData(BaseModel):
    b64_json: str = Field(description="the whole clip (given frames, then new ones) as a base64 GIF")
    mime_type: Literal["image/gif"] = "image/gif"
    frames: int


class VideoGenerationResponse(BaseModel):
    created: int
    data: list[VideoData]


# ---------------------------------------------------------------- misc


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    model: str  # generates images and videos
    chat_model: str  # answers chat completions: `model`, or its understanding model (`<model>-chat`)
    waiting: int
    running: int
    rows_in_use: int
    max_rows: int
