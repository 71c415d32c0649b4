"""`emu3 serve`: load a pipeline and run the HTTP API under uvicorn (loopback unless told otherwise)."""

from __future__ import annotations

import argparse
import logging

from emu3.serve.config import ServeConfig

EXTRA_HINT = "`emu3 serve` needs the serve extra: pip install 'emu3[serve]'"


def serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from emu3.serve.app import build_app
    except ImportError as err:
        raise SystemExit(f"{EXTRA_HINT} ({err})") from err
    from emu3.commands import default_model_folder, load_pipeline
    from emu3.generate.pipeline import chat_model_folder

    cfg = ServeConfig(host=args.host, port=args.port, api_key=args.api_key, max_batch=args.max_batch,
                      max_queue=args.queue, max_len=args.max_len)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipe = load_pipeline(args.model, args.vq, args.device, args.dtype)
    # chat completions: the folder's understanding model (<folder>/chat), if it has one
    chat = None if args.generation_model or args.vq else chat_model_folder(args.model or default_model_folder())
    reader = load_pipeline(str(chat), None, args.device, args.dtype) if chat is not None else None
    if chat is not None:
        logging.getLogger(__name__).info("chat completions: the understanding model in %s", chat)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        logging.getLogger(__name__).warning("listening on %s without --api-key: anyone who can reach it may use it",
                                            cfg.host)  # fmt: skip
    uvicorn.run(build_app(pipe, cfg, reader), host=cfg.host, port=cfg.port, log_level="info")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
    p.add_argument("--vq", default=None, help="vision tokenizer folder, if not inside --model (BAAI layout)")
    p.add_argument("--generation-model", action="store_true",
                   help="answer chat completions with the generation model even if the folder holds an "
                        "understanding model (<folder>/chat), which otherwise answers them")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="decoder dtype (default: auto, bf16 where the device runs it fast, else fp32)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1/*")
    p.add_argument("--max-batch", type=int, default=16, help="decode-batch rows; a guided image takes two (16)")
    p.add_argument("--queue", type=int, default=64, help="requests that may wait for a row; 429 beyond (64)")
    p.add_argument("--max-len", type=int, default=None, help="slots per batch row (default: the model's context)")
