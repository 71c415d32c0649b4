"""Token corpora on disk: examples of (tokens, loss mask), memory-mapped, written once.

A corpus folder holds `meta.json` and, per shard, three flat arrays:
    <shard>.tokens.u32    every example's token ids, back to back
    <shard>.mask.u8       1 where the token is a training target (labels), 0 elsewhere
    <shard>.offsets.i64   start of each example (+ the end), so example i is [o[i], o[i+1])
plus `<shard>.kinds.json` (one short string per example, e.g. "t2i", "i2t", "qa", "chosen").
Shards are written whole to a temporary name and renamed, so a half-written shard never exists.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META = "meta.json"


@dataclass(frozen=True)
class Example:
    tokens: list[int]
    labels: list[int]  # aligned with tokens; -100 where no loss
    kind: str = "text"


def write_shard(folder: str | Path, name: str, examples: Iterable[Example]) -> int:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens, mask, offsets, kinds = [], [], [0], []
    for ex in examples:
        if len(ex.tokens) != len(ex.labels):
            raise ValueError(f"example of kind {ex.kind!r}: {len(ex.tokens)} tokens but {len(ex.labels)} labels")
        tokens.extend(ex.tokens)
        mask.extend(int(label != -100) for label in ex.labels)
        offsets.append(len(tokens))
        kinds.append(ex.kind)
    arrays = {"tokens.u32": np.asarray(tokens, np.uint32), "mask.u8": np.asarray(mask, np.uint8),
              "offsets.i64": np.asarray(offsets, np.int64)}  # fmt: skip
    for suffix, array in arrays.items():
        tmp = folder / f".{name}.{suffix}.tmp"
        array.tofile(tmp)
        os.replace(tmp, folder / f"{name}.{suffix}")
    tmp = folder / f".{name}.kinds.tmp"
    tmp.write_text(json.dumps(kinds))
    os.replace(tmp, folder / f"{name}.kinds.json")
    _update_meta(folder, name, len(kinds))
    return len(kinds)


def _update_meta(folder: Path, name: str, count: int) -> None:
    meta = read_meta(folder) if (folder / META).is_file() else {"format": "emu3-tokens", "version": 1, "shards": {}}
    meta["shards"][name] = count
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / META)


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a token corpus (no {META}); run `emu3 pretokenize` first")
    return json.loads(path.read_text())


class Corpus:
    """All shards of a corpus folder as one indexable sequence of examples (memory-mapped).

    `kinds` keeps only examples of those kinds; a kind named n times is indexed n times, so that it is
    drawn n times as often (e.g. ("qa", "qa", "t2i") doubles the questions' share)."""

    def __init__(self, folder: str | Path, kinds: tuple[str, ...] | None = None) -> None:
        self.folder = Path(folder)
        repeats = None if kinds is None else Counter(kinds)  # kind -> times each of its examples is indexed
        meta = read_meta(folder)
        self._shards = []
        index = []
        for name in sorted(meta["shards"]):
            tok = np.memmap(self.folder / f"{name}.tokens.u32", dtype=np.uint32, mode="r")
            mask = np.memmap(self.folder / f"{name}.mask.u8", dtype=np.uint8, mode="r")
            offsets = np.fromfile(self.folder / f"{name}.offsets.i64", dtype=np.int64)
            names = json.loads((self.folder / f"{name}.kinds.json").read_text())
            s = len(self._shards)
            self._shards.append((tok, mask, offsets, names))
            index += [(s, i) for i, k in enumerate(names) for _ in range(1 if repeats is None else repeats[k])]
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> Example:
        s, j = self._index[i]
        tok, mask, offsets, names = self._shards[s]
        a, b = offsets[j], offsets[j + 1]
        tokens = tok[a:b].astype(np.int64).tolist()
        labels = [t if m else -100 for t, m in zip(tokens, mask[a:b].tolist(), strict=True)]
        return Example(tokens, labels, names[j])

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s, j in self._index:
            k = self._shards[s][3][j]
            counts[k] = counts.get(k, 0) + 1
        return counts

    def __iter__(self) -> Iterator[Example]:
        return (self[i] for i in range(len(self)))
