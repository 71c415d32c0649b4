"""Training throughput: our decoder vs transformers' Emu3ForConditionalGeneration, same weights, the
same plain loop (AdamW, bf16 autocast, next-token loss), one run.

    python benchmarks/train_throughput.py [--dim 256 --layers 4 --vocab 8192 --batch 8 --seq 512]
                                          [--steps 5 --rounds 6 --threads 1] [--compile]

Ours uses its fused output-projection + cross-entropy over hidden states (emu3/train/linear_ce.py);
transformers computes full logits and its own loss. Both use the recipes' optimizer (build_optimizer:
AdamW with parameter groups and the fused kernel, a plain torch flag). The variants take
turns, `rounds` rounds of `steps` steps each, and the median round of each counts, so that load from
other processes on a shared machine hits all alike. Prints one JSON line (tokens/s of both and the
ratio) and writes benchmarks/results/train_throughput.json.

With --compile, two more variants join the same interleaved run: each model with every decoder
layer compiled in place (`block.compile()`, as the recipes' `compile=true` does; transformers'
`model.text_model.layers` the same way), each from a copy of the same weights. Compilation happens
in the warm-up, outside the timed rounds; its seconds (the first step of each compiled variant) are
reported. The eager figures stay the headline `ratio`; the compiled ones go under `compiled`.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import emu3
from emu3.recipes.common import compile_blocks
from emu3.train.losses import LossWeights, next_token_loss, token_classes
from emu3.train.optim import OptimConfig, build_optimizer


def _seconds_per_step(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _compare(steps_by_name: dict, steps: int, rounds: int, compiled=()) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per step of each variant over `rounds` rounds of `steps` steps, the variants
    taking turns (and turns at going first), so that load from other processes hits all alike.
    Also returns the seconds of each variant's first warm-up step (compilation, where compiled)."""
    first = {}
    for name, step in steps_by_name.items():  # warm-up: one step, two for the compiled; the first timed
        start = time.perf_counter()
        step()
        first[name] = time.perf_counter() - start
        if name in compiled:
            step()
    names = list(steps_by_name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(_seconds_per_step(steps_by_name[name], steps))
    return {name: statistics.median(t) for name, t in times.items()}, first


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
    p.add_argument("--compile", action="store_true", help="also time both with their decoder layers compiled")
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

    def step_ours(model):
        # The recipes' optimizer (AdamW parameter groups, fused kernel) for both models.
        opt = build_optimizer(model, OptimConfig(lr=1e-4))

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = next_token_loss(model.hidden(tokens), model.lm_head.weight, tokens, classes, LossWeights()).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    def step_ref(model):
        opt = build_optimizer(model, OptimConfig(lr=1e-4))

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=tokens, labels=tokens).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    variants = {}
    if args.compile:  # copies before any step, so that all four start from the same weights
        ours_c, ref_c = copy.deepcopy(ours), copy.deepcopy(ref)
        compile_blocks(ours_c)
        for layer in ref_c.model.text_model.layers:
            layer.compile()
        variants = {"ours_compiled": step_ours(ours_c), "transformers_compiled": step_ref(ref_c)}
    variants = {"ours": step_ours(ours), "transformers": step_ref(ref)} | variants
    secs, first = _compare(variants, args.steps, args.rounds, compiled=("ours_compiled", "transformers_compiled"))
    n = args.batch * args.seq
    record = {
        "benchmark": "train_throughput",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "model": {"dim": args.dim, "layers": args.layers, "vocab": args.vocab},
        "tokens_per_step": n,
        "steps": args.steps * args.rounds,
        "ours_tok_s": round(n / secs["ours"], 1),
        "transformers_tok_s": round(n / secs["transformers"], 1),
        "ratio": round(secs["transformers"] / secs["ours"], 2),
    }
    if args.compile:
        record["compiled"] = {
            "how": "each decoder layer compiled in place (nn.Module.compile, inductor), same loop",
            "ours_tok_s": round(n / secs["ours_compiled"], 1),
            "transformers_tok_s": round(n / secs["transformers_compiled"], 1),
            "ratio": round(secs["transformers_compiled"] / secs["ours_compiled"], 2),
            "ours_vs_ours_eager": round(secs["ours"] / secs["ours_compiled"], 2),
            "transformers_vs_transformers_eager": round(secs["transformers"] / secs["transformers_compiled"], 2),
            # first step of each compiled variant (compilation + one step), outside the timed rounds
            "ours_compile_s": round(first["ours_compiled"], 1),
            "transformers_compile_s": round(first["transformers_compiled"], 1),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
