"""Training throughput: our decoder vs transformers' Emu3ForConditionalGeneration, same weights, the
same plain loop (AdamW, bf16 autocast, next-token loss), one run.

    python benchmarks/train_throughput.py [--dim 256 --layers 4 --vocab 8192 --batch 8 --seq 512]
                                          [--steps 5 --rounds 6 --threads 1]

Ours uses its fused output-projection + cross-entropy over hidden states (emu3/train/linear_ce.py);
transformers computes full logits and its own loss. Both use the recipes' optimizer (build_optimizer:
AdamW with parameter groups and the fused kernel, a plain torch flag). The two take
turns, `rounds` rounds of `steps` steps each, and the median round of each counts, so that load from
other processes on a shared machine hits both alike. Prints one JSON line (tokens/s of both and the
ratio) and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import emu3
from emu3.train.losses import LossWeights, next_token_loss, token_classes
from emu3.train.optim import OptimConfig, build_optimizer


def _seconds_per_step(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _compare(step_a, step_b, steps: int, rounds: int) -> tuple[float, float]:
    """Median seconds per step of each over `rounds` rounds of `steps` steps, the two taking turns
    (and turns at going first), so that load from other processes hits both alike."""
    step_a(), step_b()  # warm-up
    a, b = [], []
    for r in range(rounds):
        order = [(step_a, a), (step_b, b)]
        for step, times in order if r % 2 == 0 else order[::-1]:
            times.append(_seconds_per_step(step, steps))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    text = transformers.Emu3TextConfig(
        vocab_size=args.vocab,
        hidden_size=args.dim,
        intermediate_size=args.dim * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.dim // 64,
        num_key_value_heads=max(1, args.dim // 256),
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attention_dropout=0.0,
    )
    vq = transformers.Emu3VQVAEConfig(
        codebook_size=256,
        embed_dim=4,
        latent_channels=4,
        base_channels=32,
        channel_multiplier=[1, 2],
        num_res_blocks=1,
        attn_resolutions=[],
        hidden_size=64,
    )
    vmap = {f"<|visual token {k:06d}|>": args.vocab // 2 + k for k in range(256)} | {"<image>": 3, "<|extra_200|>": 4}
    ref = transformers.Emu3ForConditionalGeneration(
        transformers.Emu3Config(text_config=text, vq_config=vq, vocabulary_map=vmap)
    ).train()
    with tempfile.TemporaryDirectory() as folder:
        ref.save_pretrained(folder)
        ours = emu3.load_decoder(folder, dtype=torch.float32).train()
    tokens = torch.randint(5, args.vocab, (args.batch, args.seq))
    classes = token_classes(tokens, args.vocab // 2, args.vocab // 2)
    # The recipes' optimizer (AdamW parameter groups, fused kernel) for both models.
    opt_ours = build_optimizer(ours, OptimConfig(lr=1e-4))
    opt_ref = build_optimizer(ref, OptimConfig(lr=1e-4))

    def step_ours():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = next_token_loss(ours.hidden(tokens), ours.lm_head.weight, tokens, classes, LossWeights()).loss
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_ref():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = ref(input_ids=tokens, labels=tokens).loss
        loss.backward()
        opt_ref.step()
        opt_ref.zero_grad(set_to_none=True)

    ours_s, ref_s = _compare(step_ours, step_ref, args.steps, args.rounds)
    n = args.batch * args.seq
    record = {
        "benchmark": "train_throughput",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "model": {"dim": args.dim, "layers": args.layers, "vocab": args.vocab},
        "tokens_per_step": n,
        "steps": args.steps * args.rounds,
        "ours_tok_s": round(n / ours_s, 1),
        "transformers_tok_s": round(n / ref_s, 1),
        "ratio": round(ref_s / ours_s, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
