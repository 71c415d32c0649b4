"""Images and clips on the wire: base64 / data-URI decoding of PNG, JPEG and GIF, PNG and GIF encoding.

Everything here works on (H, W, 3) uint8 arrays (clips: (T, H, W, 3)) and raises MediaError, whose
message is safe to show to a client, for anything it cannot read.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}
MAX_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs long before PIL's own warning


class MediaError(ValueError):
    """Undecodable or unsupported media; the message names what was wrong."""


def decode_data_uri(uri: str, allowed: dict[str, str]) -> bytes:
    """The bytes of `data:<mime>;base64,<data>` whose mime is one of `allowed`."""
    match = _DATA_URI.fullmatch(uri.strip())
    if match is None:
        raise MediaError("expected a data URI like 'data:image/png;base64,...' (remote URLs are not fetched)")
    mime = (match.group("mime") or "").lower()
    if mime not in allowed:
        raise MediaError(f"unsupported media type {mime or '(none)'!r}; use one of {sorted(allowed)}")
    return decode_base64(match.group("data"))


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("invalid base64 data") from None


def read_image(data: bytes, formats: tuple[str, ...] = ("PNG", "JPEG")) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB."""
    image = _open(data, formats)
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise MediaError(f"cannot decode the image: {err}") from None


def read_gif(data: bytes) -> np.ndarray:
    """GIF bytes -> (T, H, W, 3) uint8 frames."""
    image = _open(data, ("GIF",))
    try:
        frames = [np.asarray(f.convert("RGB"), dtype=np.uint8) for f in ImageSequence.Iterator(image)]
    except (OSError, ValueError) as err:
        raise MediaError(f"cannot decode the GIF: {err}") from None
    return np.stack(frames)


def png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def gif_base64(frames: np.ndarray, fps: int) -> str:
    buffer = io.BytesIO()
    first, *rest = [Image.fromarray(f) for f in frames]
    first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
    return base64.b64encode(buffer.getvalue()).decode()


def fit_area(image: np.ndarray, max_area: int) -> np.ndarray:
    """Shrink (keeping the aspect ratio) so that H * W <= max_area; smaller images are left as they are."""
    h, w = image.shape[:2]
    if h * w <= max_area:
        return image
    scale = (max_area / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def _open(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=list(formats))
    except (UnidentifiedImageError, OSError):
        raise MediaError(f"not a {' or '.join(formats)} image") from None
    if image.width * image.height > MAX_PIXELS or image.width == 0 or image.height == 0:
        raise MediaError(f"image of {image.width}x{image.height} pixels is not accepted")
    return image
