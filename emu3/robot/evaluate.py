"""Closed-loop evaluation: seeded rollouts of a policy (and of the scripted expert on the same seeds).

    emu3 robot eval --env PandaPush-v3 --episodes 50

Writes `eval.json` (per-episode results, success rates with 95% Wilson intervals), `eval.md` (a short
table) and `rollouts.gif` (the first few policy episodes). Evaluation seeds start at 10000, apart from
the collection seeds (0 ..), so no evaluation scene was seen in training.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from emu3.robot.env import EnvConfig, RobotEnv
from emu3.robot.experts import EXPERTS
from emu3.robot.policy import Policy, shipped_policy


@dataclass(frozen=True)
class EvalConfig:
    env_id: str = "PandaPush-v3"
    policy: str = ""  # policy folder; empty: the shipped one for env_id
    episodes: int = 50
    seed: int = 10_000
    execute: int = 0  # actions executed per policy call before re-planning (0: the whole chunk)
    gif_episodes: int = 3
    expert: bool = True  # also roll out the scripted expert on the same seeds
    out: str = "runs/robot/eval"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.episodes <= 0 or self.execute < 0 or self.gif_episodes < 0:
            raise ValueError("episodes must be positive; execute and gif_episodes non-negative")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial rate (well-behaved at 0 and n successes)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def policy_rollout(policy: Policy, env: RobotEnv, seed: int, execute: int) -> tuple[bool, int, list[np.ndarray]]:
    obs = env.reset(seed=seed)
    history, frames, ok, t = [obs], [obs.frame], False, 0
    while t < env.max_steps:
        chunk = policy.act(history)
        for action in chunk[: execute or len(chunk)]:
            obs, ok, done = env.step(action)
            history, t = history[-1:] + [obs], t + 1
            frames.append(obs.frame)
            if done:
                return ok, t, frames
    return ok, t, frames


def expert_rollout(env: RobotEnv, seed: int) -> tuple[bool, int]:
    expert, obs = EXPERTS[env.cfg.env_id], env.reset(seed=seed)
    for t in range(env.max_steps):
        obs, ok, done = env.step(expert(obs))
        if done:
            return ok, t + 1
    return ok, env.max_steps


def _rate(results: list[dict]) -> dict:
    k, n = sum(r["success"] for r in results), len(results)
    lo, hi = wilson_interval(k, n)
    return {"success_rate": k / n, "successes": k, "episodes": n, "wilson95": [round(lo, 4), round(hi, 4)],
            "mean_steps": float(np.mean([r["steps"] for r in results]))}  # fmt: skip


def write_gif(frames: list[np.ndarray], path: Path, scale: int = 2, fps: int = 10) -> Path:
    from PIL import Image

    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def evaluate(cfg: EvalConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    folder = Path(cfg.policy) if cfg.policy else shipped_policy(cfg.env_id)
    policy = Policy.load(folder)
    if policy.env_id != cfg.env_id:
        raise SystemExit(f"the policy in {folder} was trained on {policy.env_id}, not {cfg.env_id}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    env = RobotEnv(EnvConfig(cfg.env_id))
    started = time.perf_counter()
    results, gif = [], []
    for i in range(cfg.episodes):
        ok, steps, frames = policy_rollout(policy, env, cfg.seed + i, cfg.execute)
        results.append({"seed": cfg.seed + i, "success": ok, "steps": steps})
        if i < cfg.gif_episodes:
            gif += frames + [frames[-1]] * 5  # hold the last frame a moment
        print(f"  episode {i + 1}/{cfg.episodes}: {'success' if ok else 'failure'} in {steps} steps", flush=True)
    policy_seconds = time.perf_counter() - started
    env.close()
    summary = {"env": cfg.env_id, "policy_folder": str(folder), "policy": _rate(results),
               "seconds": round(policy_seconds, 1), "config": asdict(cfg), "episodes": results}  # fmt: skip
    if cfg.expert:
        expert_env = RobotEnv(EnvConfig(cfg.env_id, render=False))
        expert = [dict(zip(("success", "steps"), expert_rollout(expert_env, cfg.seed + i), strict=True))
                  for i in range(cfg.episodes)]  # fmt: skip
        expert_env.close()
        summary["expert"] = _rate(expert)
    (out / "eval.json").write_text(json.dumps(summary, indent=1))
    if gif:
        write_gif(gif, out / "rollouts.gif")
    (out / "eval.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    lines = [f"## {summary['env']}: closed-loop success over {summary['policy']['episodes']} seeded episodes", "",
             "| agent | success | 95% Wilson interval | mean steps |", "|---|---|---|---|"]  # fmt: skip
    for name in ("policy", "expert"):
        if name in summary:
            r = summary[name]
            lo, hi = r["wilson95"]
            lines.append(f"| {name} | {r['successes']}/{r['episodes']} = {r['success_rate']:.0%} | "
                         f"[{lo:.0%}, {hi:.0%}] | {r['mean_steps']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"
