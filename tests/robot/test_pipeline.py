"""End to end in panda-gym: experts, collect -> shards, a few training steps, a closed-loop eval episode.

Needs the `[sim]` extra (pybullet, panda-gym, gymnasium), which the `dev` extra and CI install.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("panda_gym", reason="the robot tests need the [sim] extra: pip install 'emu3[sim]'")

from emu3.configuration import load  # noqa: E402
from emu3.data.shards import Corpus  # noqa: E402
from emu3.robot.collect import CollectConfig, collect, load_episodes  # noqa: E402
from emu3.robot.env import EnvConfig, RobotEnv  # noqa: E402
from emu3.robot.evaluate import EvalConfig, evaluate, expert_rollout  # noqa: E402
from emu3.robot.policy import Policy, shipped_policy  # noqa: E402
from emu3.robot.train import RobotTrainConfig, main  # noqa: E402


@pytest.mark.parametrize("env_id, need", [("PandaReach-v3", 5), ("PandaPush-v3", 4)])
def test_experts_succeed(env_id, need):
    env = RobotEnv(EnvConfig(env_id, render=False))
    wins = sum(expert_rollout(env, seed)[0] for seed in range(5))
    env.close()
    assert wins >= need


def test_env_renders_frames_and_proprioception():
    env = RobotEnv(EnvConfig("PandaPush-v3"))
    obs = env.reset(seed=0)
    assert obs.frame.shape == (64, 64, 3) and obs.frame.dtype == np.uint8 and obs.frame.std() > 10
    assert obs.gripper.shape == (3,) and obs.object.shape == (3,) and "push" in obs.instruction
    obs2, ok, done = env.step(np.array([1.0, 0.0, 0.0]))
    assert obs2.gripper[0] > obs.gripper[0] and not done
    env.close()


def test_collect_train_eval(tmp_path):
    data = collect(CollectConfig(EnvConfig("PandaPush-v3"), episodes=2, seed=0, out=str(tmp_path / "data")))
    episodes = load_episodes(data)
    n = len(episodes["action"])
    assert episodes["frame"].shape == (n, 64, 64, 3) and episodes["success"].shape == (2,)
    assert np.abs(episodes["action"]).max() <= 1.0 and set(episodes["episode"]) == {0, 1}
    assert episodes["success"].all()  # the noisy expert still solves these two seeds

    overrides = [f"data={data}", f"out={tmp_path / 'run'}", "steps=25", "batch_size=8", "log_every=5",
                 "vq_train.steps=2", "vq_train.frames=40", "vq_train.batch_size=4", "model.dim=64",
                 "model.n_layers=2", "model.ffn_dim=128", "model.max_seq_len=128", "optim.lr=0.003",
                 "optim.warmup_steps=0", "obs.state=[gripper,object,goal]", "chunk=2"]  # fmt: skip
    folder = main(load(RobotTrainConfig, None, overrides))
    report = json.loads((tmp_path / "run" / "train.json").read_text())
    assert report["final_loss"] < report["first_loss"] - 1.0  # from ~ln(vocab) toward the action bins
    corpus = Corpus(tmp_path / "run" / "tokens")
    assert len(corpus) == n and corpus[0].kind == "PandaPush-v3"

    policy = Policy.load(folder)
    assert policy.act([RobotEnv(EnvConfig("PandaPush-v3")).reset(seed=3)]).shape == (2, 3)
    summary = evaluate(EvalConfig(policy=str(folder), episodes=1, gif_episodes=1, out=str(tmp_path / "eval")))
    assert 0.0 <= summary["policy"]["success_rate"] <= 1.0
    lo, hi = summary["policy"]["wilson95"]
    assert 0.0 <= lo <= hi <= 1.0 and summary["expert"]["episodes"] == 1
    assert (tmp_path / "eval" / "rollouts.gif").stat().st_size > 1000
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["env"] == "PandaPush-v3"
    assert "Wilson" in (tmp_path / "eval" / "eval.md").read_text()


@pytest.mark.parametrize("env_id", ["PandaReach-v3", "PandaPush-v3"])
def test_shipped_policy_runs(env_id, tmp_path):
    if not (shipped_policy(env_id) / "policy.json").is_file():
        pytest.skip(f"no shipped policy for {env_id}")
    summary = evaluate(EvalConfig(env_id=env_id, episodes=1, gif_episodes=0, expert=False, out=str(tmp_path)))
    assert summary["policy"]["episodes"] == 1
