"""Next-token training on a token corpus: Emu3 pretraining (text 1.0 / vision 0.5 loss weights) and,
with `init=` and an SFT corpus, supervised fine-tuning (`emu3 sft`; prompts are masked in the data;
`vision_only=true` is the paper's quality fine-tuning on visual tokens only).

    emu3 pretrain configs/pretrain/tiny.yaml data.corpus=runs/tokens steps=200
    torchrun --nproc_per_node=2 -m emu3 pretrain configs/pretrain/tiny.yaml dist=fsdp
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from emu3.configuration import to_dict
from emu3.data.batches import ExampleStream, pack
from emu3.data.shards import Corpus
from emu3.recipes.common import (
    LMObjective,
    TrainConfig,
    autocast,
    check_device,
    export_model,
    model_for,
    tokenizer_for,
)
from emu3.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from emu3.train.distributed import all_reduce_mean, barrier, full_state_dict, init_distributed, teardown, wrap_model
from emu3.train.metrics import MetricLogger, progress_bar
from emu3.train.optim import build_optimizer, lr_at, set_lr


def main(cfg: TrainConfig) -> Path:
    # ---- set-up
    check_device(cfg.device)
    dist = init_distributed(cfg.dist, cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tok = tokenizer_for(cfg)
    decoder = model_for(cfg, tok)
    objective = LMObjective(decoder, tok, cfg.loss, cfg.vision_only)
    out, state = Path(cfg.out), TrainState()
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None and dist.world_size > 1:
        raise SystemExit(f"{out} has a checkpoint; resuming is supported in single-process runs (resume=false)")
    objective = wrap_model(objective, cfg.dist, bf16=cfg.bf16)
    optimizer = build_optimizer(objective, cfg.optim)
    if ckpt is not None:
        state = load_checkpoint(ckpt, decoder, optimizer)
        print(f"resumed from {ckpt} at step {state.step}")
    corpus = Corpus(cfg.data.corpus, cfg.data.kinds or None)
    stream = ExampleStream(corpus, seed=cfg.data.seed, position=state.position)
    log = MetricLogger(out / "metrics.jsonl", enabled=dist.is_main, every=cfg.log_every)
    if dist.is_main:
        n_params = sum(p.numel() for p in decoder.parameters()) / 1e6
        print(f"{n_params:.2f}M parameters; {len(corpus)} examples {corpus.kinds()}")
    per_rank = cfg.data.batch_size // dist.world_size

    # ---- loop
    bar = progress_bar(cfg.steps, state.step, enabled=dist.is_main)
    while state.step < cfg.steps:
        started = time.perf_counter()
        set_lr(optimizer, lr := lr_at(state.step, cfg.steps, cfg.optim))
        sums, tokens_seen = {"loss": 0.0, "text": 0.0, "vision": 0.0}, 0
        for _ in range(cfg.optim.grad_accum):
            batch, _ = pack(stream, cfg.data.batch_size, cfg.data.seq_len, tok.special.pad)
            mine = slice(dist.rank * per_rank, (dist.rank + 1) * per_rank)
            with autocast(cfg.bf16, dist.device):
                result = objective(*(t[mine].to(dist.device) for t in (batch.tokens, batch.input_pos, batch.labels)))
            (result.loss / cfg.optim.grad_accum).backward()
            for key, value in (("loss", result.loss), ("text", result.text), ("vision", result.vision)):
                sums[key] += value.item() / cfg.optim.grad_accum
            tokens_seen += int((batch.input_pos >= 0).sum())
        grad_norm = torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        state.step, state.position = state.step + 1, stream.position
        log.log(state.step, loss=all_reduce_mean(torch.tensor(sums["loss"]), dist).item(), text_loss=sums["text"],
                vision_loss=sums["vision"], lr=lr, grad_norm=float(grad_norm),
                tokens_per_s=tokens_seen / (time.perf_counter() - started))  # fmt: skip
        if dist.world_size == 1 and (state.step % cfg.save_every == 0 or state.step == cfg.steps):
            save_checkpoint(out, decoder.state_dict(), optimizer, state, config=to_dict(cfg))

    # ---- export
    final = out / "model"
    weights = {k.removeprefix("model."): v for k, v in full_state_dict(objective).items()}
    if dist.is_main:
        plain = decoder.eval() if dist.world_size == 1 else _plain(cfg, tok, weights)
        export_model(plain, tok, final, cfg.vq, pipeline_from=cfg.init)
        log.plot(out / "curves.png")
        print(f"saved {final}")
    barrier(dist)
    teardown(dist)
    return final


def _plain(cfg: TrainConfig, tok, weights):
    """An unsharded copy of the decoder holding `weights` (after FSDP training), for saving."""
    from dataclasses import replace

    plain = model_for(replace(cfg, activation_checkpointing=False, compile=False), tok)
    plain.load_state_dict(weights, strict=True)
    return plain.eval()
