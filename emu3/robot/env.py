"""panda-gym environments, headless, behind one small wrapper.

`RobotEnv` yields an `Observation` (instruction text, RGB frame, proprioception, and the privileged
object/goal positions that only the scripted experts and optional state tokens read) and takes
actions in [-1, 1]^3 (end-effector displacement; the gripper is blocked in Reach and Push).
Frames are rendered with pybullet's CPU TinyRenderer from a fixed camera above the table, without
shadows (about 15 ms per 64x64 frame). pybullet, panda-gym and gymnasium are the `[sim]` extra.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INSTRUCTIONS = {
    "PandaReach-v3": "move the gripper to the green target",
    "PandaPush-v3": "push the green cube to the target",
}


def require_sim() -> None:
    """Raise a clear error when the `[sim]` extra is missing."""
    try:
        import gymnasium  # noqa: F401
        import panda_gym  # noqa: F401
        import pybullet  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"robot commands need the [sim] extra: pip install 'emu3[sim]' ({err})") from None


@dataclass(frozen=True)
class EnvConfig:
    env_id: str = "PandaPush-v3"
    image_size: int = 64
    camera_distance: float = 0.7
    camera_yaw: float = 90.0
    camera_pitch: float = -60.0
    render: bool = True  # False: no frames (expert-only runs)

    def __post_init__(self) -> None:
        if self.env_id not in INSTRUCTIONS:
            raise ValueError(f"unknown env {self.env_id!r}; supported: {sorted(INSTRUCTIONS)}")

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.env_id]


@dataclass
class Observation:
    instruction: str
    frame: np.ndarray | None  # (H, W, 3) uint8
    gripper: np.ndarray  # (3,) end-effector position (proprioception)
    goal: np.ndarray  # (3,) target position (privileged)
    object: np.ndarray | None  # (3,) cube position (privileged; Push only)


class RobotEnv:
    def __init__(self, cfg: EnvConfig) -> None:
        require_sim()
        import gymnasium
        import panda_gym  # noqa: F401  (registers the envs)

        self.cfg = cfg
        self._env = gymnasium.make(cfg.env_id, render_mode="rgb_array")
        self.max_steps = int(self._env.spec.max_episode_steps)
        self._camera = None

    def reset(self, seed: int) -> Observation:
        raw, _ = self._env.reset(seed=seed)
        return self._observe(raw)

    def step(self, action: np.ndarray) -> tuple[Observation, bool, bool]:
        """-> (observation, success, done)."""
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        raw, _, terminated, truncated, info = self._env.step(action)
        return self._observe(raw), bool(info.get("is_success", False)), bool(terminated or truncated)

    def close(self) -> None:
        self._env.close()

    def render(self) -> np.ndarray:
        import pybullet

        client = self._env.unwrapped.sim.physics_client
        if self._camera is None:
            view = client.computeViewMatrixFromYawPitchRoll(
                cameraTargetPosition=[0.0, 0.0, 0.0], distance=self.cfg.camera_distance, yaw=self.cfg.camera_yaw,
                pitch=self.cfg.camera_pitch, roll=0.0, upAxisIndex=2,
            )  # fmt: skip
            proj = client.computeProjectionMatrixFOV(fov=60.0, aspect=1.0, nearVal=0.1, farVal=10.0)
            self._camera = (view, proj)
        s = self.cfg.image_size
        out = client.getCameraImage(s, s, viewMatrix=self._camera[0], projectionMatrix=self._camera[1],
                                    shadow=False, renderer=pybullet.ER_TINY_RENDERER)  # fmt: skip
        return np.asarray(out[2], dtype=np.uint8).reshape(s, s, 4)[..., :3].copy()

    def _observe(self, raw: dict) -> Observation:
        state = raw["observation"]
        return Observation(
            instruction=self.cfg.instruction,
            frame=self.render() if self.cfg.render else None,
            gripper=np.asarray(state[:3], np.float32),
            goal=np.asarray(raw["desired_goal"], np.float32),
            object=np.asarray(state[6:9], np.float32) if self.cfg.env_id != "PandaReach-v3" else None,
        )
