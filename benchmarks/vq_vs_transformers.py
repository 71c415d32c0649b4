"""Vision-tokenizer throughput: our VQModel vs transformers' Emu3VQVAE on the same weights, one run.

    python benchmarks/vq_vs_transformers.py [--size 128 --batch 8 --repeats 5]

Prints one JSON line (images/s for encode and decode, both implementations, and the ratios) and
writes benchmarks/results/vq_vs_transformers.json. Needs the [dev] extra (transformers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from emu3.convert.vq import load_vision_tokenizer


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/vq_vs_transformers.json"))
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = transformers.Emu3VQVAEConfig(codebook_size=4096, embed_dim=4, latent_channels=4, base_channels=64,
                                       channel_multiplier=[1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[3],
                                       hidden_size=256, temporal_downsample_factor=4)  # fmt: skip
    ref = transformers.Emu3VQVAE(cfg).eval()
    with tempfile.TemporaryDirectory() as folder:
        ref.save_pretrained(folder)
        ours = load_vision_tokenizer(folder)
    x = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
    sizes = torch.tensor([[args.size, args.size]] * args.batch)
    with torch.inference_mode():
        codes = ours.encode_image(x)
        assert torch.equal(codes, torch.stack(ref.encode(x, sizes).image_tokens)), "codes differ"
        enc_ours = _best(lambda: ours.encode_image(x), args.repeats)
        enc_ref = _best(lambda: ref.encode(x, sizes), args.repeats)
        dec_ours = _best(lambda: ours.decode_image(codes), args.repeats)
        dec_ref = _best(lambda: ref.decode(codes), args.repeats)
    n = args.batch
    record = {
        "benchmark": "vq_vs_transformers", "device": "cpu", "threads": torch.get_num_threads(),
        "image": f"{args.size}x{args.size}", "batch": n,
        "encode_images_per_s": {"ours": round(n / enc_ours, 2), "transformers": round(n / enc_ref, 2)},
        "decode_images_per_s": {"ours": round(n / dec_ours, 2), "transformers": round(n / dec_ref, 2)},
        "encode_ratio": round(enc_ref / enc_ours, 2), "decode_ratio": round(dec_ref / dec_ours, 2),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
