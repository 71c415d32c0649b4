"""The `emu3` command line: each subcommand parses its flags and makes one call into the package.

No logic lives here; heavy imports happen inside the command functions so `emu3 --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int | None]


# ---------------------------------------------------------------- commands


def _selfcheck(args: argparse.Namespace) -> int:
    from emu3.selfcheck import run_selfcheck

    return run_selfcheck(verbose=not args.quiet)


def _add_selfcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("selfcheck", help="build tiny random models and check that the core invariants hold")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    p.set_defaults(func=_selfcheck)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """The shared spelling of a recipe command: `emu3 CMD CONFIG [key=value ...]`."""
    p.add_argument("config", nargs="?", default=None, help="YAML override file (defaults: the dataclass defaults)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 steps=20")


# ---------------------------------------------------------------- generation


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
    p.add_argument("--vq", default=None, help="vision tokenizer folder, if not inside --model (BAAI layout)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="decoder dtype (default: auto, bf16 where the device runs it fast, else fp32)",
    )
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=None, help="top-k sampling (0 = off)")
    p.add_argument("--min-p", type=float, default=None,
                   help="keep tokens at least this fraction as likely as the likeliest, measured without guidance "
                        "(0 = off; default: the model's)")  # fmt: skip


def _load_pipeline(args: argparse.Namespace):
    from emu3.commands import load_pipeline

    return load_pipeline(args.model, args.vq, args.device, args.dtype)


def _generate(args: argparse.Namespace) -> int:
    from emu3.commands import generate_images

    return generate_images(_load_pipeline(args), args)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="text -> image(s)")
    p.add_argument("prompts", nargs="+", help="one or more prompts (batched together)")
    p.add_argument("-o", "--output", default="emu3.png", help="output file; several images get _N suffixes")
    p.add_argument("--size", default=None, help="image size in pixels, HxW or one number (default: the model's)")
    p.add_argument("--num-images", type=int, default=1, help="images per prompt")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (1 = off; default: the model's, for the prompt's family "
                        "if its folder keeps one, e.g. digits)")  # fmt: skip
    p.add_argument("--negative", default=None, help="negative prompt (default: the model's)")
    _add_model_args(p)
    p.set_defaults(func=_generate)


def _generate_video(args: argparse.Namespace) -> int:
    from emu3.commands import generate_video

    return generate_video(_load_pipeline(args), args)


def _add_generate_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate-video", help="text -> video, or extend a video (--extend)")
    p.add_argument("prompt", help="what happens in the video")
    p.add_argument("-o", "--output", default="emu3.gif", help="output .gif or .mp4")
    p.add_argument("--frames", type=int, default=None,
                   help="latent frames to generate (each decodes to several; more than the model's context holds "
                        "are made in windows)")  # fmt: skip
    p.add_argument("--extend", default=None, help="a .gif/.mp4 clip to continue instead of starting from nothing")
    p.add_argument("--context-frames", type=int, default=None,
                   help="latent frames each window reads when the video outgrows the model's context (default: "
                        "as many as fit beside one new frame)")  # fmt: skip
    p.add_argument("--size", default=None, help="frame size in pixels, HxW (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--fps", type=int, default=8, help="frames per second of the written file")
    _add_model_args(p)
    p.set_defaults(func=_generate_video)


def _chat(args: argparse.Namespace) -> int:
    from emu3.commands import chat, load_pipeline

    return chat(load_pipeline(args.model, args.vq, args.device, args.dtype, understanding=not args.generation_model),
                args)  # fmt: skip


def _add_chat(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="ask about an image; without a question, a multi-turn chat")
    p.add_argument("image", nargs="?", default=None, help="image file (png/jpg/...)")
    p.add_argument("question", nargs="?", default=None, help="one question; omit it for an interactive chat")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit")
    p.add_argument("--generation-model", action="store_true",
                   help="answer with the folder's generation model even when it holds an understanding model "
                        "(<model>/chat, used by default); the shipped demo's generation model answers the world's "
                        "questions but no longer captions")  # fmt: skip
    _add_model_args(p)
    p.set_defaults(func=_chat)


def _serve(args: argparse.Namespace) -> int:
    from emu3.serve.server import serve

    return serve(args)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from emu3.serve.server import add_arguments

    p = sub.add_parser("serve", help="HTTP API (OpenAI-shaped) and a demo web page over a model")
    add_arguments(p)
    p.set_defaults(func=_serve)


# ---------------------------------------------------------------- training


def _recipe(module: str, config_class: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        import importlib

        from emu3.configuration import ConfigError, load

        recipe = importlib.import_module(f"emu3.recipes.{module}")
        owner = importlib.import_module("emu3.recipes.common") if config_class == "TrainConfig" else recipe
        path, overrides = args.config, list(args.overrides)
        if path is not None and "=" in path and not path.endswith((".yaml", ".yml")):
            path, overrides = None, [path, *overrides]  # no config file, only key=value overrides
        try:
            cfg = load(getattr(owner, config_class), path, overrides)
        except ConfigError as err:
            raise SystemExit(f"config error: {err}") from None
        recipe.main(cfg)
        return 0

    return run


def _add_recipes(sub: argparse._SubParsersAction) -> None:
    for name, module, cls, text in [
        ("train-vq", "train_vq", "VQTrainConfig", "train a vision tokenizer (VQ) from scratch"),
        ("pretrain", "pretrain", "TrainConfig", "next-token pretraining with text/vision loss weights"),
        ("sft", "sft", "TrainConfig", "supervised fine-tuning from a trained model"),
        ("dpo", "dpo", "DPOConfig", "direct preference optimisation with a frozen reference"),
        ("train-demo", "train_demo", "DemoConfig", "reproduce the shipped demo model from nothing (world -> DPO)"),
    ]:
        p = sub.add_parser(name, help=text)
        _add_config_args(p)
        p.set_defaults(func=_recipe(module, cls))


def _pretokenize(args: argparse.Namespace) -> int:
    from emu3.commands import pretokenize

    return pretokenize(args)


def _add_pretokenize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretokenize", help="images/videos/text of a JSONL manifest -> token shards")
    p.add_argument("manifest", help='JSONL: {"image": "a.png", "caption": "..."} / {"video": ...} / {"text": ...}')
    p.add_argument("-o", "--output", required=True, help="corpus folder to write (resumes if it exists)")
    p.add_argument("--model", required=True, help="folder with the tokenizer and the VQ (or --vq)")
    p.add_argument("--vq", default=None, help="vision tokenizer folder, if not inside --model")
    p.add_argument("--understanding", type=float, default=0.3, help="fraction also emitted image -> caption")
    p.add_argument("--null-caption", type=float, default=0.1, help="fraction of captions dropped (for CFG)")
    p.add_argument(
        "--qa-per-example", type=int, default=1, help="questions about one image asked as the turns of one conversation"
    )
    p.add_argument("--rank", type=int, default=0, help="this worker's index (for parallel runs)")
    p.add_argument("--world-size", type=int, default=1, help="number of parallel workers")
    p.set_defaults(func=_pretokenize)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from emu3.demo import add_commands

    add_commands(sub)


# ---------------------------------------------------------------- robot


def _robot(name: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        from emu3.robot import commands

        return getattr(commands, name)(args)

    return run


def _add_robot(sub: argparse._SubParsersAction) -> None:
    robot = sub.add_parser("robot", help="vision-language-action policy in panda-gym: collect, train, eval")
    rsub = robot.add_subparsers(dest="robot_command", metavar="ROBOT_COMMAND", required=True)
    envs = ["PandaReach-v3", "PandaPush-v3"]
    p = rsub.add_parser("collect", help="record scripted-expert episodes (frames, state, actions, success)")
    p.add_argument("--env", default="PandaPush-v3", choices=envs)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="first episode seed")
    p.add_argument("--noise", type=float, default=0.3, help="exploration noise std on 30%% of the steps")
    p.add_argument("-o", "--out", default=None, help="folder (default: runs/robot/<task>/data)")
    p.set_defaults(func=_robot("collect"))
    p = rsub.add_parser("train", help="VQ + token corpus + policy from collected episodes")
    _add_config_args(p)
    p.set_defaults(func=_robot("train"))
    p = rsub.add_parser("eval", help="closed-loop rollouts: success rate (Wilson interval), GIF, JSON + markdown")
    p.add_argument("--env", default="PandaPush-v3", choices=envs)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--policy", default=None, help="policy folder (default: the shipped one for --env)")
    p.add_argument("--seed", type=int, default=10_000, help="first episode seed")
    p.add_argument("--execute", type=int, default=0, help="actions run per policy call (0: the whole chunk)")
    p.add_argument("--gif-episodes", type=int, default=3, help="episodes recorded in rollouts.gif")
    p.add_argument("--no-expert", action="store_true", help="skip the scripted expert's rollouts")
    p.add_argument("-o", "--out", default=None, help="folder (default: runs/robot/eval/<env>)")
    p.set_defaults(func=_robot("evaluate"))


# Each entry adds one subcommand. Keep the list in the order `emu3 --help` should show.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_selfcheck,
    _add_generate,
    _add_generate_video,
    _add_chat,
    _add_serve,
    _add_pretokenize,
    _add_recipes,
    _add_robot,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emu3",
        description="Emu3 in pure PyTorch: one token stream for text, images and video.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:  # bad input: a corrupt file, a wrong size, a long prompt
        if args.debug:
            raise
        print(f"emu3 {args.command}: error: {err}\n(`emu3 --debug {args.command} ...` shows the traceback)",
              file=sys.stderr)  # fmt: skip
        return 2
    return int(result or 0)
