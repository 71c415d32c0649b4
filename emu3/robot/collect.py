"""Record scripted-expert episodes: frames, proprioception, privileged state, expert actions, success.

    emu3 robot collect --env PandaPush-v3 --episodes 300 --out runs/robot/push/data

Exploration noise (DART, Laskey et al. 2017): with probability `noise_prob` a step executes the expert
action plus Gaussian noise, while the *label* stays the clean expert action, so the cloned policy sees
recoveries from states slightly off the expert's path. Episode seeds are `seed .. seed + episodes - 1`.
Everything goes to one `episodes.npz` (a step table + per-episode success) and `collect.json`; with a
VQ (`--vq`) the frames are also stored as codes. Token shards are built from it by `emu3 robot train`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emu3.robot.env import EnvConfig, RobotEnv
from emu3.robot.experts import EXPERTS


@dataclass(frozen=True)
class CollectConfig:
    env: EnvConfig
    episodes: int = 100
    seed: int = 0
    noise: float = 0.3  # std of the exploration noise, in action units
    noise_prob: float = 0.3  # fraction of steps that get it
    out: str = "runs/robot/data"


def collect(cfg: CollectConfig, progress: bool = True) -> Path:
    env = RobotEnv(cfg.env)
    expert = EXPERTS[cfg.env.env_id]
    rng = np.random.default_rng(cfg.seed)
    cols: dict[str, list] = {k: [] for k in ("frame", "gripper", "goal", "object", "action", "episode", "step")}
    success, lengths = [], []
    started = time.perf_counter()
    for e in range(cfg.episodes):
        obs, ok = env.reset(seed=cfg.seed + e), False
        for t in range(env.max_steps):
            label = expert(obs)
            act = label
            if rng.random() < cfg.noise_prob:
                act = np.clip(label + rng.normal(0.0, cfg.noise, size=3), -1, 1).astype(np.float32)
            for key, value in (("frame", obs.frame), ("gripper", obs.gripper), ("goal", obs.goal),
                               ("object", obs.object if obs.object is not None else np.zeros(3, np.float32)),
                               ("action", label), ("episode", e), ("step", t)):  # fmt: skip
                cols[key].append(value)
            obs, ok, done = env.step(act)
            if done:
                break
        success.append(ok)
        lengths.append(t + 1)
        if progress and (e + 1) % max(1, cfg.episodes // 10) == 0:
            print(f"  {e + 1}/{cfg.episodes} episodes, success {np.mean(success):.2f}, "
                  f"{time.perf_counter() - started:.0f}s", flush=True)  # fmt: skip
    env.close()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.stack(v) if k in ("frame", "gripper", "goal", "object", "action") else np.asarray(v)
              for k, v in cols.items() if not (k == "frame" and not cfg.env.render)}  # fmt: skip
    np.savez_compressed(out / "episodes.npz", success=np.asarray(success), **arrays)
    summary = {
        "env": cfg.env.env_id, "instruction": cfg.env.instruction, "episodes": cfg.episodes,
        "steps": int(sum(lengths)), "success_rate_with_noise": float(np.mean(success)),
        "mean_length": float(np.mean(lengths)), "seconds": round(time.perf_counter() - started, 1),
        "config": asdict(cfg),
    }  # fmt: skip
    (out / "collect.json").write_text(json.dumps(summary, indent=1))
    print(f"{cfg.episodes} episodes ({summary['steps']} steps), expert success with noise "
          f"{summary['success_rate_with_noise']:.2f} -> {out / 'episodes.npz'}")  # fmt: skip
    return out


def load_episodes(folder: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(folder) / "episodes.npz") as data:
        return {k: data[k] for k in data.files}
