"""Train a robot policy from recorded episodes, from scratch, on a CPU in minutes.

    emu3 robot train configs/robot/push.yaml data=runs/robot/push/data

1. vision tokenizer: a small VQ trained on the episodes' frames with the train-vq recipe (or `vq=DIR`);
2. every frame -> an 8x8 grid of codes; every recorded step of a successful episode -> one example
   (robot/sequence.py), written as a token corpus (data/shards.py);
3. a small Emu3 decoder trained by next-token prediction with the action bins as their own loss class;
4. export: a policy folder (robot/policy.py) with the bf16 decoder, the tokenizers and the VQ.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from emu3.configuration import to_dict
from emu3.convert.decoder import load_decoder, save_decoder
from emu3.convert.vq import load_vision_tokenizer
from emu3.data.batches import pad
from emu3.data.shards import Corpus, write_shard
from emu3.model.config import DecoderConfig
from emu3.model.init import build_decoder
from emu3.recipes.common import ModelConfig, autocast
from emu3.robot.collect import load_episodes
from emu3.robot.env import INSTRUCTIONS
from emu3.robot.policy import POLICY_FILE, encode_frames
from emu3.robot.sequence import Layout, ObsConfig, episode_examples
from emu3.tokens.text import TextTokenizer, train_text_tokenizer
from emu3.train.losses import IGNORE, LossWeights, next_token_loss, token_classes
from emu3.train.metrics import MetricLogger, progress_bar
from emu3.train.optim import OptimConfig, build_optimizer, lr_at, set_lr
from emu3.vision.config import VQConfig


@dataclass(frozen=True)
class VQSettings:
    steps: int = 200
    frames: int = 2000  # frames sampled from the episodes to train it on
    batch_size: int = 8
    vq: VQConfig = field(default_factory=lambda: VQConfig(codebook_size=256, ch=32, ch_mult=(1, 1, 2, 2),
                                                          num_res_blocks=1, attn_levels=()))  # fmt: skip


@dataclass(frozen=True)
class RobotTrainConfig:
    out: str = "runs/robot/policy"
    data: str = ""  # a folder written by `emu3 robot collect`
    vq: str = ""  # an existing VQ folder; empty: train one on the frames (`vq_train`)
    vq_train: VQSettings = field(default_factory=VQSettings)
    init: str = ""  # continue from this policy folder's decoder (same layout) instead of a fresh one
    obs: ObsConfig = field(default_factory=ObsConfig)
    chunk: int = 4  # actions predicted per call
    action_bins: int = 256
    state_bins: int = 256
    model: ModelConfig = field(default_factory=lambda: ModelConfig(dim=128, n_layers=4, n_heads=4, n_kv_heads=2,
                                                                   ffn_dim=384, max_seq_len=256))  # fmt: skip
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, min_lr=5e-5, warmup_steps=100,
                                                                   weight_decay=0.01))  # fmt: skip
    loss: LossWeights = field(default_factory=LossWeights)
    steps: int = 3000
    batch_size: int = 64
    log_every: int = 100
    ordinal_init: bool = True  # start the bin embeddings / output rows as smooth functions of the bin value
    bf16: bool = True  # bf16 autocast (much faster on CPUs with AVX512-BF16)
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data is required (a folder written by `emu3 robot collect`)")
        if self.steps <= 0 or self.batch_size <= 0 or self.chunk <= 0:
            raise ValueError("steps, batch_size and chunk must be positive")


def instruction_tokenizer(codebook_size: int) -> TextTokenizer:
    """A byte-level BPE over the instructions (as many merges as they support)."""
    texts = list(INSTRUCTIONS.values())
    for size in range(320, 255, -1):
        try:
            return train_text_tokenizer(texts, size, codebook_size)
        except ValueError:
            continue
    raise RuntimeError("could not train the instruction tokenizer")


def train_frame_vq(cfg: RobotTrainConfig, frames: np.ndarray, out: Path) -> Path:
    """Train the small VQ on a sample of the episodes' frames with the train-vq recipe."""
    from PIL import Image

    from emu3.recipes import train_vq

    folder = out / "vq_frames"
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(frames), size=min(cfg.vq_train.frames, len(frames)), replace=False)
    folder.mkdir(parents=True, exist_ok=True)
    for i in pick:
        Image.fromarray(frames[i]).save(folder / f"{i:06d}.png")
    vq_cfg = train_vq.VQTrainConfig(
        out=str(out / "vq"), vq=cfg.vq_train.vq, data=str(folder), image_size=frames.shape[1], video_fraction=0.0,
        batch_size=cfg.vq_train.batch_size, steps=cfg.vq_train.steps, restart_every=100,
        save_every=cfg.vq_train.steps, log_every=100, eval_images=min(64, len(pick) // 4), threads=cfg.threads,
        seed=cfg.seed,
    )  # fmt: skip
    model = train_vq.main(vq_cfg)
    shutil.rmtree(folder)
    return model


def _targets_only(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep only the positions that predict a target: (B, T, D), (B, T) -> (1, N + 1, D), (1, N + 1), laid
    out so that next_token_loss's one-step shift pairs each kept hidden state with its target. Skips the
    output projection over the (unlabelled) prompt, most of each sequence."""
    keep = labels[:, 1:] != IGNORE  # (B, T-1)
    h = hidden[:, :-1][keep]  # (N, D)
    t = labels[:, 1:][keep]  # (N,)
    h = torch.cat([h, h.new_zeros(1, h.shape[-1])])[None]
    t = torch.cat([t.new_full((1,), IGNORE), t])[None]
    return h, t


@torch.no_grad()
def ordinal_init(model, layout: Layout, std: float = 0.02) -> None:
    """Initialise the embedding (and output) rows of the action and state bins with Fourier features of
    the bin's value, so neighbouring bins start out similar. Randomly initialised, each of the 256 bins
    would be an unrelated symbol learned from the few hundred examples that use it; with this start
    the model interpolates between values from the first step. Still training from scratch."""
    dim = model.cfg.dim
    for bins in (layout.actions, layout.states):
        u = (torch.arange(bins.n_bins, dtype=torch.float64) + 0.5) / bins.n_bins * 2 - 1  # (n,) in (-1, 1)
        freqs = torch.logspace(-1, math.log10(bins.n_bins / 4), dim // 2, dtype=torch.float64) * math.pi
        feats = torch.cat([torch.sin(u[:, None] * freqs), torch.cos(u[:, None] * freqs)], dim=1)  # (n, dim)
        feats = (feats / feats.std() * std).float()
        rows = slice(bins.first_id, bins.end_id)
        model.embed.weight[rows] = feats
        model.lm_head.weight[rows] = feats


def _cached_codes(vq, vq_folder: Path, frames: np.ndarray, data: Path) -> np.ndarray:
    """Every frame's codes, cached beside the episodes per VQ (keyed by a hash of its weights)."""
    key = hashlib.sha1((vq_folder / "model.safetensors").read_bytes()).hexdigest()[:12]
    path = data / f"codes-{key}.npy"
    if path.is_file():
        codes = np.load(path)
        if len(codes) == len(frames):
            return codes
    with progress_bar(len(frames)) as bar:
        bar.set_description("encoding frames")
        codes = encode_frames(vq, frames, progress=bar.update)
    np.save(path, codes)
    return codes


def main(cfg: RobotTrainConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_episodes(cfg.data)
    meta = json.loads((Path(cfg.data) / "collect.json").read_text())
    if "frame" not in data:
        raise SystemExit(f"{cfg.data} was collected without frames (render=false); the policy needs them")

    # ---- vision tokenizer and codes
    vq_folder = Path(cfg.vq) if cfg.vq else train_frame_vq(cfg, data["frame"], out)
    vq = load_vision_tokenizer(vq_folder)
    codes = _cached_codes(vq, vq_folder, data["frame"], Path(cfg.data))
    vq_seconds = time.perf_counter() - started
    print(f"vision tokenizer ready; {len(codes)} frames -> {codes.shape[1:]} codes ({vq_seconds:.0f}s)")

    # ---- token corpus
    tok = instruction_tokenizer(vq.cfg.codebook_size)
    layout = Layout(tok, cfg.obs, cfg.chunk, cfg.action_bins, cfg.state_bins)
    examples = episode_examples(layout, data, codes, meta["instruction"], kind=meta["env"])
    write_shard(out / "tokens", "train", examples)
    corpus = Corpus(out / "tokens")
    print(f"{len(corpus)} examples of {len(corpus[0].tokens)} tokens from {int(data['success'].sum())} successful "
          f"episodes; vocabulary {layout.vocab_size}")  # fmt: skip

    # ---- model and loop
    m = cfg.model
    dcfg = DecoderConfig(vocab_size=layout.vocab_size, dim=m.dim, n_layers=m.n_layers, n_heads=m.n_heads,
                         n_kv_heads=m.n_kv_heads, ffn_dim=m.ffn_dim, max_seq_len=m.max_seq_len,
                         rope_theta=m.rope_theta, dropout=m.dropout, pad_id=tok.special.pad,
                         image_area=m.image_area)  # fmt: skip
    if cfg.init:
        model = load_decoder(cfg.init, dtype=torch.float32).train()
        if model.cfg.vocab_size != layout.vocab_size:
            raise SystemExit(f"{cfg.init} has {model.cfg.vocab_size} ids, this layout needs {layout.vocab_size}")
    else:
        model = build_decoder(dcfg, seed=cfg.seed).train()
        if cfg.ordinal_init:
            ordinal_init(model, layout)
    optimizer = build_optimizer(model, cfg.optim)
    action_ids = (layout.actions.first_id, layout.actions.end_id)
    visual = (tok.special.visual_start, tok.special.codebook_size)
    log = MetricLogger(out / "metrics.jsonl", every=cfg.log_every)
    gen = torch.Generator().manual_seed(cfg.seed)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    bar = progress_bar(cfg.steps)
    first_loss = last_loss = float("nan")
    train_started = time.perf_counter()
    for step in range(cfg.steps):
        set_lr(optimizer, lr := lr_at(step, cfg.steps, cfg.optim))
        pick = torch.randint(len(corpus), (cfg.batch_size,), generator=gen).tolist()
        batch = pad([corpus[i] for i in pick], tok.special.pad)
        with autocast(cfg.bf16, "cpu"):
            hidden, labels = _targets_only(model.hidden(batch.tokens, batch.input_pos), batch.labels)
            result = next_token_loss(hidden, model.lm_head.weight, labels,
                                     token_classes(labels, *visual, action_ids), cfg.loss)  # fmt: skip
        result.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last_loss = result.loss.item()
        first_loss = last_loss if step == 0 else first_loss
        log.log(step + 1, loss=last_loss, lr=lr, grad_norm=float(grad_norm))
        bar.update(1)
    bar.close()
    train_seconds = time.perf_counter() - train_started

    # ---- export
    folder = out / "policy"
    save_decoder(model.eval(), folder, bos_id=tok.special.bos, eos_id=tok.special.eos, pad_id=tok.special.pad,
                 dtype=torch.bfloat16)  # fmt: skip
    tok.save(folder)
    if (folder / "vq").exists():
        shutil.rmtree(folder / "vq")
    shutil.copytree(vq_folder, folder / "vq")
    policy = {"env": meta["env"], "instruction": meta["instruction"], "obs": asdict(cfg.obs), "chunk": cfg.chunk,
              "action_bins": cfg.action_bins, "state_bins": cfg.state_bins}  # fmt: skip
    (folder / POLICY_FILE).write_text(json.dumps(policy, indent=1))
    report = {"first_loss": first_loss, "final_loss": last_loss, "examples": len(corpus),
              "train_seconds": round(train_seconds, 1), "vq_seconds": round(vq_seconds, 1),
              "total_seconds": round(time.perf_counter() - started, 1), "config": to_dict(cfg)}  # fmt: skip
    (out / "train.json").write_text(json.dumps(report, indent=1))
    log.plot(out / "curves.png", keys=("loss",))
    print(f"loss {first_loss:.3f} -> {last_loss:.3f} in {train_seconds:.0f}s; saved {folder}")
    return folder
