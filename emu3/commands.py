"""What the generation subcommands of `emu3` do: load a pipeline, run it with a progress bar, write
files. Kept apart from cli.py so that `emu3 --help` imports nothing heavy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def default_model_folder() -> Path:
    """The small model shipped inside the package (built by `emu3 train-demo`)."""
    return Path(__file__).resolve().parent / "assets" / "demo_model"


def load_pipeline(model: str | None, vq: str | None, device: str, dtype: str, understanding: bool = False):
    """The model folder (default: the shipped one) as a Pipeline. With `understanding`, its understanding
    model (`<folder>/chat`, Emu3-Chat) if it holds one, else the folder's model itself."""
    from emu3.generate.pipeline import Pipeline, chat_model_folder

    folder = Path(model) if model else default_model_folder()
    if not folder.is_dir():
        hint = "" if model else " (the shipped demo model is missing: run `emu3 train-demo` or pass --model)"
        raise SystemExit(f"model folder not found: {folder}{hint}")
    if understanding and vq is None:
        folder = chat_model_folder(folder) or folder
    return Pipeline.load(folder, vq_folder=vq, dtype=dtype, device=device)  # dtype: "auto", "bf16" or "fp32"


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("*", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise SystemExit(f"--size {text!r}: expected HxW in pixels, e.g. 64x64") from None
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2:
        raise SystemExit(f"--size {text!r}: expected HxW in pixels, e.g. 64x64")
    return sizes[0], sizes[1]


def _sampling(pipe, args: argparse.Namespace):
    """The sampling the command line asks for; None without --temperature, --top-k or --min-p (the model's
    own, for text-to-image per prompt family: `PipelineConfig.prompt_sampling`)."""
    from emu3.generate.sampling import overlay

    if args.temperature is None and args.top_k is None and args.min_p is None:
        return None
    try:
        return overlay(pipe.cfg.sampling(), temperature=args.temperature, top_k=args.top_k, min_p=args.min_p)
    except ValueError as err:
        raise SystemExit(f"bad sampling settings: {err}") from err


class _Bar:
    """A tqdm progress bar driven by (done, total) callbacks."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="tok", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _numbered(path: Path, i: int, n: int) -> Path:
    return path if n == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")


def generate_images(pipe, args: argparse.Namespace) -> int:
    from PIL import Image

    bar = _Bar("generating")
    try:
        images = pipe.text_to_image(
            args.prompts, image_size=parse_size(args.size), num_images=args.num_images, guidance=args.guidance,
            negative_prompt=args.negative, sampling=_sampling(pipe, args), seed=args.seed, progress=bar,
        )  # fmt: skip
    finally:
        bar.close()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        path = _numbered(out, i, len(images))
        Image.fromarray(image).save(path)
        print(path)
    return 0


def generate_video(pipe, args: argparse.Namespace) -> int:
    from emu3.vision.video_io import read_video, write_video

    bar = _Bar("generating")
    common = dict(guidance=args.guidance, sampling=_sampling(pipe, args), seed=args.seed,
                  context_frames=args.context_frames, progress=bar)  # fmt: skip
    try:
        if args.extend:
            given = read_video(args.extend)
            frames = pipe.extend_video(given, args.prompt, new_frames=args.frames or pipe.cfg.video_frames, **common)
        else:
            frames = pipe.text_to_video(args.prompt, frames=args.frames, image_size=parse_size(args.size), **common)
    finally:
        bar.close()
    write_video(args.output, frames, fps=args.fps)
    print(args.output)
    return 0


def _read_image(path: str) -> np.ndarray:
    from emu3.vision.image_io import read_image

    return read_image(path)


def chat(pipe, args: argparse.Namespace) -> int:
    from emu3.generate.pipeline import Turn

    kwargs = dict(max_new_tokens=args.max_new_tokens, seed=args.seed)
    if (sampling := _sampling(pipe, args)) is not None:
        kwargs["sampling"] = sampling
    image = _read_image(args.image) if args.image else None
    if args.question is not None:
        content = (image, args.question) if image is not None else (args.question,)
        print(pipe.chat([Turn("user", content)], **kwargs))
        return 0
    turns: list[Turn] = []
    print("emu3 chat: type a message, /image PATH to attach an image, /reset, or /quit", file=sys.stderr)
    pending = [image] if image is not None else []
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return 0
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            turns, pending = [], []
            continue
        if line.startswith("/image "):
            try:
                pending.append(_read_image(line.removeprefix("/image ").strip()))
            except (OSError, ValueError) as err:
                print(f"cannot use that image: {err}", file=sys.stderr)
            continue
        if not line:
            continue
        turns.append(Turn("user", (*pending, line)))
        pending = []
        answer = pipe.chat(turns, **kwargs)
        turns.append(Turn("assistant", (answer,)))
        print(f"emu3> {answer}")


def pretokenize(args: argparse.Namespace) -> int:
    from emu3.convert.vq import load_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, read_manifest
    from emu3.data.pretokenize import pretokenize as run
    from emu3.tokens.text import load_text_tokenizer

    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise SystemExit(f"manifest not found: {manifest}")
    tok = load_text_tokenizer(args.model)
    vq = load_vision_tokenizer(args.vq or args.model)
    cfg = PretokenizeConfig(
        understanding=args.understanding, null_caption=args.null_caption, qa_per_example=args.qa_per_example
    )
    stats = run(read_manifest(manifest), args.output, vq, tok, cfg, rank=args.rank, world_size=args.world_size)
    print(f"{stats['records']} records -> {stats['examples']} examples; {stats['skipped']} skipped; "
          f"{stats['resumed_shards']} shards already done")  # fmt: skip
    return 0
