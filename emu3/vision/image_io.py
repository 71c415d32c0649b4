"""Images in and out of the vision tokenizer: reading files, the official resize, [-1, 1] pixels.

`smart_resize` and the mean/std 0.5 normalisation follow BAAI's `Emu3VisionVQImageProcessor`
(spec 2.6): sides rounded to multiples of 8, scaled into [min_pixels, max_pixels], PIL bicubic.
`to_uint8` truncates like the official post-processing (x * 127.5 + 127.5, clipped, floored).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

MIN_PIXELS = 512 * 512
MAX_PIXELS = 1024 * 1024
MAX_ASPECT = 5.0


def smart_resize(height: int, width: int, factor: int = 8, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:  # fmt: skip
    """Target (height, width): multiples of `factor`, area within [min_pixels, max_pixels], aspect kept."""
    if height < factor or width < factor:
        raise ValueError(f"image is {height}x{width}; both sides must be at least {factor} pixels")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds {MAX_ASPECT}:1")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a clear error for missing, corrupt or odd files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("RGB", "RGBA", "L", "P", "LA", "I;16", "I", "F", "CMYK", "YCbCr"):
                raise ValueError(f"{path}: unsupported image mode {image.mode!r}")
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not a readable image: {err}") from err


def to_pixels(image: np.ndarray | Image.Image, factor: int = 8, *, min_pixels: int = 0,
              max_pixels: int = MAX_PIXELS) -> Tensor:  # fmt: skip
    """(H, W, 3) uint8 (or PIL) -> (3, H', W') float pixels in [-1, 1], resized (bicubic) only if
    needed to make the sides multiples of `factor` within the pixel limits. `min_pixels=MIN_PIXELS`
    gives the official pre-processing of the released tokenizer."""
    pil = _resized(image if isinstance(image, Image.Image) else _as_pil(image), factor, min_pixels, max_pixels)
    array = np.asarray(pil, dtype=np.float32) / 255.0
    return torch.from_numpy((array - 0.5) / 0.5).permute(2, 0, 1).contiguous()


def resize_to_multiple(image: np.ndarray, factor: int = 8, *, min_pixels: int = 0,
                       max_pixels: int = MAX_PIXELS) -> np.ndarray:  # fmt: skip
    """(H, W, 3) uint8 -> the same image with the sides `to_pixels` would give it (unchanged if they fit)."""
    return np.asarray(_resized(_as_pil(image), factor, min_pixels, max_pixels))


def _resized(pil: Image.Image, factor: int, min_pixels: int, max_pixels: int) -> Image.Image:
    """RGB, resized (bicubic) only if needed: sides multiples of `factor` within the pixel limits."""
    pil = pil.convert("RGB")
    w, h = pil.size
    th, tw = smart_resize(h, w, factor, min_pixels, max_pixels)
    return pil if (th, tw) == (h, w) else pil.resize((tw, th), Image.BICUBIC)


def _as_pil(image: np.ndarray) -> Image.Image:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    return Image.fromarray(array[..., :3])


def to_uint8(pixels: Tensor) -> np.ndarray:
    """(3, H, W) pixels in [-1, 1] -> (H, W, 3) uint8, truncating as the official post-processing."""
    array = (pixels.detach().float().cpu() * 0.5 + 0.5) * 255.0
    return array.clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)


def jpeg_copy(image: np.ndarray, quality: int = 85) -> np.ndarray:
    """(H, W, 3) uint8 saved and read back as JPEG at `quality` (1-95), as a photo library or a screenshot
    keeps an image."""
    import io

    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))
