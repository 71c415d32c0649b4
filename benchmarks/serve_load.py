"""Serving under load: 32 concurrent clients vs the same requests one at a time, on loopback.

Builds a random Emu3 (decoder + tiny VQ + tiny tokenizer; sizes from the flags), saves it, starts
`emu3 serve` on a free 127.0.0.1 port in a child process, and measures

  - sequential: `--requests` image requests sent one after another (images/s, latency),
  - concurrent: the same requests from `--clients` clients at once (images/s, p50/p99 latency), each
    answer checked (HTTP 200, a PNG of the asked size, the same pixels as the sequential answer for
    the same seed: continuous batching must not change what a request gets),
  - memory: the server's resident memory while `--soak` more requests run concurrently (it should
    stay flat: the cache is preallocated and every row is reused).

Every phase is bounded by `--max-seconds`. Prints one JSON line and writes
benchmarks/results/serve_load.json.

    python benchmarks/serve_load.py [--clients 32 --requests 64 --soak 500 --dim 256 --layers 4 --size 32]

Needs the [serve] extra (and [dev] for the tiny tokenizer fixture it builds the model with).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(folder: Path, dim: int, layers: int, size: int) -> tuple[Path, Path]:
    from emu3.generate.pipeline import Pipeline
    from emu3.model.config import tiny
    from emu3.model.init import build_decoder
    from tests.helpers.tiny_pipeline import TINY_CONFIG, save_tiny_pipeline, tiny_vq
    from tests.helpers.tiny_tokenizers import tiny_text_tokenizer

    tok = tiny_text_tokenizer()
    cfg = tiny(vocab_size=tok.vocab_size, dim=dim, n_layers=layers, n_heads=max(dim // 64, 1),
               n_kv_heads=max(dim // 128, 1), ffn_dim=dim * 3, max_seq_len=1024, image_area=size * size)  # fmt: skip
    pipe = Pipeline(build_decoder(cfg, seed=0).eval(), tiny_vq(tok.special.codebook_size), tok, TINY_CONFIG)
    return save_tiny_pipeline(folder, pipe)


def start_server(model: Path, vq: Path, rows: int, queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "emu3", "serve", "--model", str(model), "--vq", str(vq), "--dtype", "fp32",
               "--port", str(port), "--max-batch", str(rows), "--queue", str(queue)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("emu3 serve exited during start-up")
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("emu3 serve did not start within 120 s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one(client, body: dict) -> tuple[float, bytes | None, str | None]:
    """(latency, PNG bytes or None, error or None) of one image request."""
    start = time.perf_counter()
    try:
        r = await client.post("/v1/images/generations", json=body)
    except Exception as err:  # a benchmark reports failures, it does not stop at the first
        return time.perf_counter() - start, None, repr(err)
    latency = time.perf_counter() - start
    if r.status_code != 200:
        return latency, None, f"HTTP {r.status_code}: {r.text[:200]}"
    return latency, base64.b64decode(r.json()["data"][0]["b64_json"]), None


async def run_phase(url: str, bodies: list[dict], clients: int, deadline: float, on_done=None) -> list[tuple]:
    """Send `bodies` from `clients` concurrent clients (1 = one at a time); results in body order."""
    import httpx

    results: list[tuple | None] = [None] * len(bodies)
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies) and time.monotonic() < deadline:
                i, next_index = next_index, next_index + 1
                results[i] = await one(client, bodies[i])
                if on_done is not None:
                    on_done(i)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return [r for r in results if r is not None]


def check(result: tuple, size: int) -> str | None:
    from PIL import Image

    _, png, error = result
    if error:
        return error
    image = Image.open(io.BytesIO(png))
    return None if image.size == (size, size) and image.mode == "RGB" else f"bad image {image.size} {image.mode}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=64, help="requests in the sequential and concurrent phases")
    p.add_argument("--soak", type=int, default=500, help="concurrent requests of the memory phase")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--max-seconds", type=float, default=600, help="time limit of each phase")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model, vq = build_model(Path(tmp), args.dim, args.layers, args.size)
        proc, url = start_server(model, vq, rows=2 * args.clients, queue=4 * args.clients)
        try:
            report = measure(url, proc.pid, args)
        finally:
            proc.terminate()
            proc.wait(30)
    line = json.dumps(report)
    print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")


def measure(url: str, pid: int, args: argparse.Namespace) -> dict:
    size = args.size
    bodies = [{"prompt": f"a red circle number {i}", "size": f"{size}x{size}", "seed": i} for i in range(args.requests)]
    asyncio.run(run_phase(url, bodies[:2], 1, time.monotonic() + args.max_seconds))  # warm-up

    start = time.perf_counter()
    sequential = asyncio.run(run_phase(url, bodies, 1, time.monotonic() + args.max_seconds))
    seq_s = time.perf_counter() - start

    start = time.perf_counter()
    concurrent = asyncio.run(run_phase(url, bodies, args.clients, time.monotonic() + args.max_seconds))
    conc_s = time.perf_counter() - start

    errors = [e for e in (check(r, size) for r in sequential + concurrent) if e]
    same = sum(a[1] == b[1] for a, b in zip(sequential, concurrent, strict=False) if a[1] and b[1])

    soak = [{"prompt": f"soak {i}", "size": f"{size}x{size}", "seed": 10_000 + i} for i in range(args.soak)]
    memory: list[tuple[int, float]] = [(0, rss_mib(pid))]
    every = max(args.soak // 10, 1)

    def sample(i: int) -> None:
        if (i + 1) % every == 0:
            memory.append((i + 1, rss_mib(pid)))

    soaked = asyncio.run(run_phase(url, soak, args.clients, time.monotonic() + args.max_seconds, on_done=sample))
    errors += [e for e in (check(r, size) for r in soaked) if e]
    after_warm = [m for n, m in memory if n >= args.soak // 5] or [memory[-1][1]]
    latencies = [r[0] for r in concurrent]
    return {
        "benchmark": "serve_load",
        "model": {"dim": args.dim, "layers": args.layers, "image": f"{size}x{size}", "guidance": "on (2 rows each)"},
        "clients": args.clients,
        "requests": len(concurrent),
        "answered_ok": len(sequential) + len(concurrent) + len(soaked) - len(errors),
        "errors": errors[:5],
        "sequential_images_per_s": round(len(sequential) / seq_s, 3),
        "concurrent_images_per_s": round(len(concurrent) / conc_s, 3),
        "speedup": round((len(concurrent) / conc_s) / (len(sequential) / seq_s), 2),
        "identical_to_sequential": f"{same}/{min(len(sequential), len(concurrent))}",
        "sequential_latency_p50_s": round(statistics.median(r[0] for r in sequential), 3),
        "concurrent_latency_p50_s": round(percentile(latencies, 50), 3),
        "concurrent_latency_p99_s": round(percentile(latencies, 99), 3),
        "soak_requests": len(soaked),
        "rss_mib": [[n, round(m, 1)] for n, m in memory],
        "rss_growth_after_warmup_mib": round(max(after_warm) - min(after_warm), 1),
        "cpu_threads": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
