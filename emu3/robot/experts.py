"""Scripted experts: stateless functions of the (privileged) observation -> action in [-1, 1]^3.

Stateless on purpose: a policy cloned from them only has to learn a function of what it observes.
An action moves the end effector by at most 5 cm per step (panda-gym's scale 0.05).
"""

from __future__ import annotations

import numpy as np

from emu3.robot.env import Observation

GAIN = 10.0  # action per metre of error (20 cm away -> full speed)
CUBE = 0.04  # cube edge length
TABLE_Z = 0.02  # cube centre height on the table


def reach_expert(obs: Observation) -> np.ndarray:
    """Move straight to the goal."""
    return np.clip(GAIN * (obs.goal - obs.gripper), -1.0, 1.0).astype(np.float32)


def push_expert(obs: Observation) -> np.ndarray:
    """Get behind the cube (seen from the target), lower the fingers to the table, push it onto the target.

    Phases follow from the geometry alone: while the gripper is not lined up behind the cube it goes
    (above the cube if it is close to it) to a point 6 cm behind the cube, then descends; once lined up
    and low it pushes toward the target, steering back onto the cube-target line."""
    ee, cube, goal = obs.gripper, obs.object, obs.goal
    to_goal = goal[:2] - cube[:2]
    dist = float(np.linalg.norm(to_goal))
    d = to_goal / max(dist, 1e-6)  # push direction
    rel = ee[:2] - cube[:2]
    along = float(rel @ d)  # < 0: behind the cube
    lateral = rel - along * d
    behind = cube[:2] - d * (CUBE / 2 + 0.03)
    aligned = float(np.linalg.norm(lateral)) < 0.012 and -0.07 < along < -0.01
    if aligned and ee[2] < TABLE_Z + 0.025:
        # push: aim a little past the cube's contact point toward the goal, correct lateral drift
        target_xy = ee[:2] + d * min(dist + 0.01, 0.05) * 2 - 2.0 * lateral
        target = np.array([*target_xy, TABLE_Z], np.float32)
    elif float(np.linalg.norm(ee[:2] - behind)) < 0.015:
        target = np.array([*behind, TABLE_Z], np.float32)  # descend behind the cube
    else:
        near = float(np.linalg.norm(rel)) < CUBE + 0.03 and along > -0.035
        z = TABLE_Z + 0.08 if near else max(ee[2], TABLE_Z + 0.03)  # fly over the cube, never through it
        if near and ee[2] < TABLE_Z + 0.06:
            target = np.array([*ee[:2], z], np.float32)  # lift first
        else:
            target = np.array([*behind, z], np.float32)
    return np.clip(GAIN * (target - ee), -1.0, 1.0).astype(np.float32)


EXPERTS = {"PandaReach-v3": reach_expert, "PandaPush-v3": push_expert}
