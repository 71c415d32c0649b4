"""Image-generation speed: our Generator (CFG rows batched with the prompt, plan constraint, static
cache) vs transformers' `generate` (separate unconditional pass, prefix-constraint callback), on
the same random Emu3 weights, in the same run. Prints and writes one JSON line.

    python benchmarks/generate_vs_transformers.py [--dim 256 --layers 4 --grid 16 --batch 1 4 --dtype bf16]

Needs the [dev] extra (transformers is the reference here, never a runtime dependency).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import emu3
from emu3.generate.constraints import image_plan
from emu3.generate.generator import Generator, VocabLayout
from emu3.generate.sampling import SamplingConfig

PAD, BOS, EOS, IMG, EOL, BOI, EOF, EOI = 0, 1, 2, 3, 4, 5, 6, 7


def build_reference(dim: int, layers: int, vocab: int, visual_start: int, codebook: int):
    import transformers

    text = transformers.Emu3TextConfig(
        vocab_size=vocab,
        hidden_size=dim,
        intermediate_size=dim * 3,
        num_hidden_layers=layers,
        num_attention_heads=max(dim // 64, 1),
        num_key_value_heads=max(dim // 256, 1),
        max_position_embeddings=4096,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    vq = transformers.Emu3VQVAEConfig(
        codebook_size=codebook,
        embed_dim=4,
        latent_channels=4,
        base_channels=32,
        channel_multiplier=[1, 2],
        num_res_blocks=1,
        attn_resolutions=[],
        hidden_size=64,
    )
    vmap = {f"t{i}": i for i in range(visual_start)}
    vmap.update({f"<|visual token {k:06d}|>": visual_start + k for k in range(codebook)})
    vmap.update({"<image>": IMG, "<|extra_200|>": EOL})
    torch.manual_seed(0)
    cfg = transformers.Emu3Config(text_config=text, vq_config=vq, vocabulary_map=vmap)
    return transformers.Emu3ForConditionalGeneration(cfg).eval()


def prefix_fn(prompt_len: int, h: int, w: int, visual: list[int]):
    def allowed(batch_id, input_ids):
        offset = input_ids.shape[0] - prompt_len + 1
        if offset % (w + 1) == 0:
            return [EOL]
        if offset == (w + 1) * h + 1:
            return [EOF]
        if offset == (w + 1) * h + 2:
            return [EOI]
        if offset >= (w + 1) * h + 3:
            return [EOS]
        return visual

    return allowed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--codebook", type=int, default=4096)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--large", action="store_true", help="~100M parameters in bf16 (dim 768, 12 layers, vocab 32768)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.large:
        args.dim, args.layers, args.vocab, args.codebook, args.dtype = 768, 12, 32768, 16384, "bf16"
    args.out = args.out or Path(f"benchmarks/results/generate_vs_transformers{'_large' if args.large else ''}.json")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    visual_start = args.vocab - args.codebook
    ref = build_reference(args.dim, args.layers, args.vocab, visual_start, args.codebook).to(dtype)
    with tempfile.TemporaryDirectory() as folder:
        ref.save_pretrained(folder)
        ours = emu3.load_decoder(folder, dtype=dtype)
    gen = Generator(ours, VocabLayout(visual_start, args.codebook, PAD, EOS))
    h = w = args.grid
    n_new = h * (w + 1) + 3
    prompt = [BOS] + list(range(100, 120)) + [BOI, 10, 11, 10, IMG]
    negative = [BOS] + list(range(200, 212)) + [BOI, 10, 11, 10, IMG]
    visual = list(range(visual_start, visual_start + args.codebook))
    results = []
    for batch in args.batch:
        with torch.inference_mode():
            start = time.perf_counter()
            gen.generate(
                [prompt] * batch,
                [image_plan(h, w, EOL, EOF, EOI, EOS)] * batch,
                negative_prompts=[negative] * batch,
                guidance=3.0,
                sampling=SamplingConfig(top_k=2048),
                seed=0,
            )
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            ref.generate(
                input_ids=torch.tensor([prompt] * batch),
                attention_mask=torch.ones(batch, len(prompt), dtype=torch.long),
                negative_prompt_ids=torch.tensor([negative] * batch),
                negative_prompt_attention_mask=torch.ones(batch, len(negative), dtype=torch.long),
                guidance_scale=3.0,
                do_sample=True,
                top_k=2048,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                pad_token_id=PAD,
                eos_token_id=EOS,
                prefix_allowed_tokens_fn=prefix_fn(len(prompt), h, w, visual),
            )
            ref_s = time.perf_counter() - start
        row = {
            "batch": batch,
            "new_tokens_per_image": n_new,
            "ours_s": round(ours_s, 3),
            "transformers_s": round(ref_s, 3),
            "ours_tok_s": round(batch * n_new / ours_s, 1),
            "transformers_tok_s": round(batch * n_new / ref_s, 1),
            "speedup": round(ref_s / ours_s, 2),
        }
        print(row, flush=True)
        results.append(row)
    n_params = sum(p.numel() for p in ours.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = _memcpy_bandwidth()
    for row in results:  # one decode step reads every weight once, whatever the batch
        limit = bandwidth / weight_bytes * row["batch"]
        row["bandwidth_limit_tok_s"] = round(limit, 1)
        row["ours_fraction_of_limit"] = round(row["ours_tok_s"] / limit, 3)
    record = {
        "parameters": n_params,
        "weight_bytes": weight_bytes,
        "memcpy_GBps": round(bandwidth / 1e9, 2),
        "benchmark": "generate_vs_transformers",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "model": {"dim": args.dim, "layers": args.layers, "vocab": args.vocab, "grid": f"{h}x{w}"},
        "cfg": "guidance 3.0, top_k 2048",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record) + "\n")
    print(json.dumps(record))


def _memcpy_bandwidth() -> float:
    """Bytes/s of a large tensor copy (read + write counted once each, as a decode step reads weights)."""
    src = torch.empty(256 * 1024 * 1024, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(5))
    return 2 * src.numel() / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
