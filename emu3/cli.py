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


def _serve(args: argparse.Namespace) -> int:
    from emu3.serve.server import serve

    return serve(args)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from emu3.serve.server import add_arguments

    p = sub.add_parser("serve", help="HTTP API (OpenAI-shaped) and a demo web page over a model")
    add_arguments(p)
    p.set_defaults(func=_serve)


# Each entry adds one subcommand. Keep the list in the order `emu3 --help` should show.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_selfcheck,
    _add_serve,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emu3",
        description="Emu3 in pure PyTorch: one token stream for text, images and video.",
    )
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
    return int(result or 0)
