"""Can the demo-sized decoder learn the world's motion, given many more clips than `train-demo` has?

The shipped model extends videos 45.6 px off the true physics (README table), worse than repeating
the last given frame, and the issue's target is 2 px. Two things could hold it back: the tiled vision
tokenizer (a 16-frame round trip of the shipped one finds the object in 24% of frames) and the
transformer (600 clips among 27,000 other examples). This measures both, on video alone:

1. the tokenizer floor: true clips encoded and decoded, scored on the frames a video extension
   predicts (no transformer can beat its tokenizer's round trip), for the shipped tokenizer and for
   it fine-tuned on clips (`--vq-steps`, three quarters of each batch clips);
2. a decoder of the demo's shape pretrained on `--clips` caption -> video examples only, scored by
   `emu3 eval`'s video_extension (8 given frames, 8 predicted) at its sampling defaults and greedy.

    python benchmarks/video_scaling.py --device cuda --out /tmp/vs --clips 20000 --steps 4000 -o results.json

`--vq-tile-size 0` fine-tunes the tokenizer without tiles, `--vq-codebook N` widens its codebook first,
`--vq-init FOLDER` starts from another tokenizer (with `--vq-steps 0`, uses it as it is: the decoder
alone on a tokenizer trained elsewhere), `--vq-clip-frames` sets the training clips' length (16 since
2026-11-27: with 4, one latent frame, the later chunks of a clip are never trained; the floor's
`chunks_alone` shows what each chunk would be worth on its own).
Measured on one H200 (docs/history.md, "Video: the tokenizer holds it back"): benchmarks/results/video_scaling_h200/.

Writes JSON (each stage's seconds and scores) to -o after every stage, so a run stopped by a time
limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from emu3.commands import default_model_folder
from emu3.convert.vq import load_vision_tokenizer
from emu3.eval import world as world_eval
from emu3.generate.pipeline import Pipeline
from emu3.recipes import pretrain, train_vq
from emu3.recipes.common import DataConfig, TrainConfig
from emu3.recipes.train_demo import CONFIGS, DEMO_MODEL, DemoConfig, _write_pipeline_defaults
from emu3.train.losses import LossWeights
from emu3.train.optim import OptimConfig
from emu3.worlds import data, motion


def round_trip_floor(vq, n: int, size: int, device: str, given: int = 8, total: int = 16) -> dict:
    """`emu3 eval`'s tokenizer floor (world.tokenizer_floor) on the video-extension eval's first `n`
    motions, for a bare vision tokenizer: clips of `total` frames, scored after the first `given`.
    `chunks_alone` is the same with each 4-frame chunk encoded and decoded as a clip of its own: a
    tokenizer trained only on one-chunk clips does far better there than on the joint clip, whose later
    chunks its causal temporal layers read with the earlier ones as context."""
    from emu3.vision.image_io import to_pixels, to_uint8  # noqa: PLC0415

    t = vq.cfg.temporal_downsample_factor

    @torch.inference_mode()
    def round_trip(frames: np.ndarray) -> np.ndarray:  # as Pipeline.encode_video / decode_video do
        pixels = torch.stack([to_pixels(f, vq.cfg.pixel_multiple) for f in frames])[None].to(device)
        return np.stack([to_uint8(f) for f in vq.decode_video(vq.encode_video(pixels))[0]])

    def chunk_by_chunk(frames: np.ndarray) -> np.ndarray:
        return np.concatenate([round_trip(frames[i : i + t]) for i in range(0, len(frames), t)])

    rng = random.Random(world_eval.EVAL_SEED_OFFSET + 40_000)  # the extension eval's motions
    joint, alone = [], []
    for _ in range(n):
        m = motion.sample_motion(rng, size)
        truth = motion.render_video(m, total)
        joint.append(world_eval.tokenizer_floor(round_trip, truth, m, given))
        alone.append(world_eval.tokenizer_floor(chunk_by_chunk, truth, m, given))

    def mean(scores: list[dict], key: str) -> float:
        return float(np.mean([s[key] for s in scores]))

    return {"error_px": mean(joint, "error_px"), "found": mean(joint, "found"), "n": n,
            "chunks_alone": {"error_px": mean(alone, "error_px"), "found": mean(alone, "found")}}  # fmt: skip


def widened(folder: Path, codebook: int, out: Path) -> Path:
    """The tokenizer in `folder` with `codebook` codes: its own, then copies of them drawn at random with
    a little noise (training's dead-code restarts move the unused ones onto encoder outputs)."""
    from emu3.convert.vq import save_vision_tokenizer  # noqa: PLC0415
    from emu3.vision.vq import VQModel  # noqa: PLC0415

    src = load_vision_tokenizer(folder)
    state = {k: v.float() for k, v in src.state_dict().items()}
    codes = state["quantize.embedding.weight"]
    if codebook < len(codes):
        raise ValueError(f"--vq-codebook {codebook} is smaller than the tokenizer's {len(codes)} codes")
    g = torch.Generator().manual_seed(0)
    extra = codes[torch.randint(len(codes), (codebook - len(codes),), generator=g)]
    extra = extra + 0.01 * codes.std() * torch.randn(extra.shape, generator=g)
    state["quantize.embedding.weight"] = torch.cat([codes, extra])
    model = VQModel(replace(src.cfg, codebook_size=codebook))
    model.load_state_dict(state, strict=True)
    return save_vision_tokenizer(model, out)


def extension(folder: Path, n: int, device: str, greedy: bool) -> dict:
    pipe = Pipeline.load(folder, device=device)
    if greedy:  # the likeliest code at each step, no guidance
        pipe.cfg = replace(pipe.cfg, temperature=1.0, top_k=1, guidance=1.0)
    r = world_eval.video_extension(pipe, n=n, seed=0)
    return {k: v for k, v in r.items() if k != "examples"} | {"n": n}  # each clip's error too ("items")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="/tmp/video-scaling")
    p.add_argument("--clips", type=int, default=16000)
    p.add_argument("--vq-steps", type=int, default=400)
    p.add_argument("--vq-lr", type=float, default=5e-4)
    p.add_argument("--vq-tile-size", type=int, default=-1, help="tiles for the fine-tune (-1: the shipped 24; 0: none)")
    p.add_argument("--vq-clips", type=int, default=800, help="distinct motion clips the fine-tune draws from")
    p.add_argument("--vq-codebook", type=int, default=0, help="widen the codebook to this many codes first (0: keep)")
    p.add_argument("--vq-clip-frames", type=int, default=16, help="frames per training clip (4 before 2026-11-27)")
    p.add_argument("--vq-init", default="", help="tokenizer folder to fine-tune (default: the shipped one)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--floor-n", type=int, default=32)
    p.add_argument("-o", "--output", default="video_scaling.json")
    a = p.parse_args()
    out, dev = Path(a.out), a.device
    res: dict = {"args": vars(a), "seconds": {}}

    def save() -> None:
        Path(a.output).write_text(json.dumps(res, indent=2) + "\n")

    size = DemoConfig().image_size
    shipped = default_model_folder()
    t0 = time.perf_counter()
    res["floor_shipped"] = round_trip_floor(load_vision_tokenizer(shipped, device=dev), a.floor_n, size, dev)
    print("floor, shipped tokenizer:", res["floor_shipped"], flush=True)
    save()

    # 1. the shipped tokenizer, fine-tuned with three quarters of each batch clips
    vq_dir = out / "vq"
    if a.vq_steps > 0:
        from emu3.configuration import load  # noqa: PLC0415

        start = Path(a.vq_init) if a.vq_init else shipped
        init = start if not a.vq_codebook else widened(start, a.vq_codebook, out / "vq-init")
        base = load(train_vq.VQTrainConfig, str(CONFIGS / "train_vq" / "demo.yaml"), [])
        tiles = base.vq.tile_size if a.vq_tile_size < 0 else a.vq_tile_size
        optim = replace(base.optim, lr=a.vq_lr, min_lr=a.vq_lr / 10, warmup_steps=20)
        vcfg = replace(base, out=str(vq_dir), init=str(init), steps=a.vq_steps, video_fraction=0.75, image_size=size,
                       optim=optim, save_every=a.vq_steps, device=dev, eval_images=16, video_clips=a.vq_clips,
                       clip_frames=a.vq_clip_frames, vq=replace(base.vq, tile_size=tiles))  # fmt: skip
        train_vq.main(vcfg)
        vq_model = vq_dir / "model"
    else:  # no fine-tune: the --vq-init tokenizer (or the shipped one) as it is
        vq_model = Path(a.vq_init) if a.vq_init else shipped
    vq = load_vision_tokenizer(vq_model, device=dev)
    res["seconds"]["vq"] = round(time.perf_counter() - t0, 1)
    res["floor_tuned"] = round_trip_floor(vq, a.floor_n, size, dev)
    print("floor, tokenizer used:", res["floor_tuned"], flush=True)
    save()

    # 2. caption -> video examples only
    t0 = time.perf_counter()
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens.text import TextTokenizer, load_text_tokenizer

    tok_dir, corpus = out / "tokenizer", out / "tokens"
    if not (corpus / "meta.json").exists():
        records = list(data.motion_videos(a.clips, seed=0, frames=16, image_size=size))
        # The shipped model's words cover every motion caption; its visual block follows the codebook.
        tok = TextTokenizer(load_text_tokenizer(shipped).backend, vq.cfg.codebook_size)
        tok.save(tok_dir)
        pcfg = PretokenizeConfig(understanding=0.0, null_caption=0.1, shard_size=4000, batch_size=64)
        res["tokens"] = dict(pretokenize(records, corpus, vq, tok, pcfg))
        del records
    res["seconds"]["tokens"] = round(time.perf_counter() - t0, 1)
    save()

    # 3. pretraining on them
    t0 = time.perf_counter()
    cfg = TrainConfig(
        out=str(out / "pretrain"), tokenizer=str(tok_dir), vq=str(vq_model), model=DEMO_MODEL,
        data=DataConfig(corpus=str(corpus), seq_len=416, batch_size=a.batch, seed=0, kinds=("t2v",)),
        optim=OptimConfig(lr=a.lr, min_lr=a.lr / 10, warmup_steps=50),
        loss=LossWeights(text=1.0, vision=0.5), steps=a.steps, save_every=a.steps, log_every=100, device=dev,
    )  # fmt: skip
    pretrain.main(cfg)
    folder = out / "pretrain" / "model"
    _write_pipeline_defaults(folder, DemoConfig(use_digits=False), fine_tuned=False)
    res["seconds"]["pretrain"] = round(time.perf_counter() - t0, 1)
    rows = [json.loads(x) for x in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    res["pretrain_last"] = rows[-1]
    save()

    # 4. video extension, as emu3 eval scores it
    for name, greedy in (("greedy", True), ("defaults", False)):
        t0 = time.perf_counter()
        res[f"extension_{name}"] = extension(folder, a.n, dev, greedy)
        res["seconds"][f"eval_{name}"] = round(time.perf_counter() - t0, 1)
        print(f"extension ({name}):", {k: v for k, v in res[f"extension_{name}"].items() if k != "items"}, flush=True)
        save()


if __name__ == "__main__":
    main()
