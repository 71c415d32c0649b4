"""Offline tokenisation: records of (image | video | text, caption, questions) -> token corpora.

Run once before training (LlamaGen's extract-codes stage): images and videos go through the VQ,
text through the tokenizer, and every record becomes one or more examples in the Emu3 layouts:

    {"image", "caption"}   -> "t2i"  BOS caption <image> EOS (loss on all; caption dropped with
                                     probability `null_caption` so CFG's unconditional branch is trained)
                              "i2t"  BOS <image> caption EOS, for a fraction `understanding` of records
                                     (a record's own "understanding" key overrides it; its own
                                     "generation" key, 1 by default, is the fraction also emitted t2i)
    {"video", "caption"}   -> "t2v"  BOS caption <video> EOS  (+ "v2t" like i2t)
    {"image", "qa"}        -> "qa"   chat examples with loss on the answers only: one per question, or
                                     `qa_per_example` questions as the turns of one conversation about
                                     the image (the image's tokens are then paid for once, not per answer)
                              "qa_first"  with `question_first`, also each question on its own, asked
                                     before the image: USER: question <image> ASSISTANT: answer
    {"text"}               -> "text" BOS text EOS

A record's "tag" is appended to its examples' kinds ("i2t:aug"), so that a training stage can take or
leave those examples by kind (the demo keeps augmented digits for fine-tuning only).

A manifest is JSONL with paths relative to it: {"image": "a.png", "caption": "..."}. Unreadable
or too-small images, empty captions and unknown record types are counted and skipped. Choices that
need chance (dropout, understanding direction) hash the record index, so reruns are identical.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emu3.data.shards import Example, write_shard
from emu3.tokens import templates
from emu3.tokens.format import Image
from emu3.tokens.text import TextTokenizer
from emu3.vision.image_io import read_image, to_pixels
from emu3.vision.video_io import read_video
from emu3.vision.vq import VQModel


@dataclass(frozen=True)
class PretokenizeConfig:
    understanding: float = 0.3  # fraction of captioned images also emitted image -> caption
    null_caption: float = 0.1  # fraction of t2i examples whose caption is dropped (CFG)
    shard_size: int = 2000
    batch_size: int = 32  # images per VQ call
    qa_per_example: int = 1  # questions about one image asked as the turns of one chat example
    # Also emit every question alone, before its image (kind "qa_first"). Read after the question, each
    # image token can check itself against what is asked; read first, it cannot (see docs/history.md, "Where").
    question_first: bool = False
    question_twice: bool = False  # with question_first: the question again after the image

    def __post_init__(self) -> None:
        if self.qa_per_example < 1:
            raise ValueError(f"qa_per_example must be at least 1, got {self.qa_per_example}")


def _chance(index: int, salt: str) -> float:
    return zlib.crc32(f"{salt}:{index}".encode()) / 2**32


def read_manifest(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL manifest, with media paths resolved and loaded lazily by `examples`."""
    path = Path(path)
    base = path.parent
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield {"error": f"{path}:{line_no}: not JSON"}
                continue
            for key in ("image", "video"):
                if isinstance(record.get(key), str):
                    record[key] = base / record[key]
            yield record


def _load(record: dict, key: str):
    value = record.get(key)
    if isinstance(value, str | Path):
        return read_image(value) if key == "image" else read_video(value)
    return value


def examples(
    records: Iterable[dict], vq: VQModel, tok: TextTokenizer, cfg: PretokenizeConfig, stats: Counter,
    *, start: int = 0,
) -> Iterator[Example]:  # fmt: skip
    """Examples from records; failures are counted in `stats` and never raised. Images are encoded
    in batches of `cfg.batch_size` (each image's codes do not depend on its batch)."""
    records = list(records)
    image_codes = _encode_images(records, vq, cfg.batch_size)
    for index, record in enumerate(records, start):
        try:
            if "error" in record:
                raise ValueError(record["error"])
            if record.get("image") is not None:
                codes = image_codes[index - start]
                if isinstance(codes, Exception):
                    raise codes
                yield from _image_examples(index, record, codes, tok, cfg)
            elif record.get("video") is not None:
                frames = np.asarray(_load(record, "video"))
                pixels = torch.stack([to_pixels(f, vq.cfg.video_pixel_multiple) for f in frames])[None]
                codes = vq.encode_video(pixels.to(vq.device, vq.dtype))[0].cpu()
                yield from _video_examples(index, record, codes, tok, cfg)
            elif isinstance(record.get("text"), str) and record["text"].strip():
                ids = templates.text_only(record["text"], tok)
                yield Example(ids, ids, _kind(record, "text"))
            else:
                raise ValueError("record has no image, video or text")
            stats["records"] += 1
        except (ValueError, OSError) as err:
            stats["skipped"] += 1
            if stats["skipped"] <= 5:
                print(f"skipping record {index}: {err}", file=sys.stderr)


def _encode_images(records: list[dict], vq: VQModel, batch_size: int) -> list:
    """Codes (or the error) for each record's image; images of one size are encoded together."""
    out: list = [None] * len(records)
    groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for i, record in enumerate(records):
        if record.get("image") is None or "error" in record:
            continue
        try:
            pixels = to_pixels(_load(record, "image"), vq.cfg.pixel_multiple)
            groups.setdefault(tuple(pixels.shape), []).append((i, pixels))
        except (ValueError, OSError) as err:
            out[i] = err
    for items in groups.values():
        for b in range(0, len(items), batch_size):
            part = items[b : b + batch_size]
            codes = vq.encode_image(torch.stack([p for _, p in part]).to(vq.device, vq.dtype)).cpu()
            for (i, _), c in zip(part, codes, strict=True):
                out[i] = c
    return out


def _kind(record: dict, kind: str) -> str:
    tag = record.get("tag")
    return f"{kind}:{tag}" if tag else kind


def _image_examples(index, record, codes, tok, cfg) -> Iterator[Example]:
    caption = record.get("caption")
    if caption is not None:
        if not caption.strip():
            raise ValueError("empty caption")
        if _chance(index, "t2i") < record.get("generation", 1.0):
            shown = "" if _chance(index, "null") < cfg.null_caption else caption
            ids = templates.caption_then_image(shown, codes, tok)
            yield Example(ids, ids, _kind(record, "t2i"))
        if _chance(index, "i2t") < record.get("understanding", cfg.understanding):
            ids = templates.image_then_caption(codes, caption, tok)
            yield Example(ids, ids, _kind(record, "i2t"))
    qa = list(record.get("qa") or [])
    for start in range(0, len(qa), cfg.qa_per_example):
        turns = []
        for question, answer in qa[start : start + cfg.qa_per_example]:
            content = (question,) if turns else (Image(codes), question)  # the image once, in the first turn
            turns += [templates.Message("user", content), templates.Message("assistant", (answer,))]
        ids, labels = templates.chat_example(turns, tok)
        yield Example(ids, labels, _kind(record, "qa"))
    if cfg.question_first:
        for question, answer in qa:
            asked = (question, Image(codes)) + ((question,) if cfg.question_twice else ())
            turns = [templates.Message("user", asked), templates.Message("assistant", (answer,))]
            ids, labels = templates.chat_example(turns, tok)
            yield Example(ids, labels, _kind(record, "qa_first"))


def _video_examples(index, record, codes, tok, cfg) -> Iterator[Example]:
    caption = record.get("caption") or ""
    if not caption.strip():
        raise ValueError("empty caption")
    ids = templates.caption_then_video(caption, codes, tok)
    yield Example(ids, ids, _kind(record, "t2v"))
    if _chance(index, "v2t") < cfg.understanding:
        ids = templates.video_then_caption(codes, caption, tok)
        yield Example(ids, ids, _kind(record, "v2t"))


def pretokenize(
    records: Iterable[dict], out: str | Path, vq: VQModel, tok: TextTokenizer, cfg: PretokenizeConfig,
    *, rank: int = 0, world_size: int = 1, progress: bool = True,
) -> Counter:  # fmt: skip
    """Write shards `r{rank}_NNNNN` of the examples from this rank's records (record i goes to rank
    i % world_size); shards already on disk are skipped, so an interrupted run resumes."""
    from tqdm import tqdm

    out = Path(out)
    stats: Counter = Counter()
    done = {p.name.split(".")[0] for p in out.glob(f"r{rank}_*.offsets.i64")} if out.is_dir() else set()
    mine = (r for i, r in enumerate(records) if i % world_size == rank)
    with torch.inference_mode(), tqdm(desc="pretokenize", unit="rec", disable=not progress, file=sys.stderr) as bar:
        for shard, chunk in enumerate(_chunks(mine, cfg.shard_size)):
            name = f"r{rank}_{shard:05d}"
            if name in done:
                stats["resumed_shards"] += 1
            else:
                first = (shard * cfg.shard_size) * world_size + rank
                stats["examples"] += write_shard(out, name, examples(chunk, vq, tok, cfg, stats, start=first))
            bar.update(len(chunk))
    return stats


def _chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
