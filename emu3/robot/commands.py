"""`emu3 robot collect | train | eval`: argparse namespaces -> configs -> one call each."""

from __future__ import annotations

import argparse


def collect(args: argparse.Namespace) -> int:
    from emu3.robot.collect import CollectConfig, collect
    from emu3.robot.env import EnvConfig

    out = args.out or f"runs/robot/{args.env.split('-')[0].removeprefix('Panda').lower()}/data"
    collect(CollectConfig(EnvConfig(args.env), episodes=args.episodes, seed=args.seed, noise=args.noise, out=out))
    return 0


def train(args: argparse.Namespace) -> int:
    from emu3.configuration import ConfigError, load
    from emu3.robot.train import RobotTrainConfig, main

    path, overrides = args.config, list(args.overrides)
    if path is not None and "=" in path and not path.endswith((".yaml", ".yml")):
        path, overrides = None, [path, *overrides]
    try:
        cfg = load(RobotTrainConfig, path, overrides)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    main(cfg)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from emu3.robot.evaluate import EvalConfig, evaluate

    out = args.out or f"runs/robot/eval/{args.env}"
    cfg = EvalConfig(
        env_id=args.env, policy=args.policy or "", episodes=args.episodes, seed=args.seed,
        execute=args.execute, gif_episodes=args.gif_episodes, expert=not args.no_expert, out=out,
    )  # fmt: skip
    evaluate(cfg)
    return 0
