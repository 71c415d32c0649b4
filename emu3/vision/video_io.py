"""Reading and writing short videos as (T, H, W, 3) uint8 arrays.

GIF needs only Pillow. MP4 (and other containers) go through imageio with the PyAV plugin, imported
only when used: `pip install 'emu3[video]'`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if path.suffix.lower() == ".gif":
        try:
            with Image.open(path) as gif:
                frames = [np.asarray(f.convert("RGB"), dtype=np.uint8) for f in ImageSequence.Iterator(gif)]
        except OSError as err:
            raise ValueError(f"{path} is not a readable GIF: {err}") from err
    else:
        iio = _imageio()
        try:
            frames = [np.asarray(f, dtype=np.uint8)[..., :3] for f in iio.imiter(path, plugin="pyav")]
        except Exception as err:  # noqa: BLE001 - the plugin raises many types for bad files
            raise ValueError(f"{path} is not a readable video: {err}") from err
    if not frames:
        raise ValueError(f"{path} has no frames")
    return np.stack(frames[:max_frames] if max_frames else frames)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got shape {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part" + path.suffix)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    else:
        _imageio().imwrite(tmp, frames, plugin="pyav", fps=fps, codec="libx264")
    tmp.replace(path)
    return path


def _imageio():
    try:
        import imageio.v3 as iio
    except ImportError as err:
        raise ImportError("reading/writing mp4 needs the video extra: pip install 'emu3[video]'") from err
    return iio
