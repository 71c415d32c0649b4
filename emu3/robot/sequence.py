"""The policy's token sequence: what it sees, what it predicts, and where each id lives.

One step of the policy is one example:

    <bos> instruction  [<boi> 64 visual codes <eoi>] x frames  <bos_state> state bins <eos_state>
    <boa> a[t] .. a[t+k-1] (3 bins each) <eoa>

Images are compact spans (an 8x8 grid of codes between boi/eoi, without Emu3's size header and
end-of-row markers, which a fixed 64x64 camera does not need). `frames=2` adds the previous frame
before the current one. The state span holds the gripper position (proprioception) and, only when
`ObsConfig.state` asks for them, the privileged cube / goal positions, absolute or relative
(`goal_rel` = goal - gripper, `object_rel` = cube - gripper, `push_dir` = goal - cube); 3 bins each.
The loss is on the action bins and <eoa> only (UniVLA's `apply_loss_on_only_action`).

Vocabulary: the text tokenizer's ids (text, the Emu3 special block, the visual codes), then
`action_bins` action ids, then `state_bins` state ids. UniVLA reuses the last text ids below
<|endoftext|> for its bins; a from-scratch BPE trained on a handful of instructions has no spare tail,
so the bins are appended after the visual block instead. boa/eoa are <|extra_198|>/<|extra_199|> as in
UniVLA; the state span uses <|extra_190|>/<|extra_191|>.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emu3.data.shards import Example
from emu3.tokens.actions import ActionTokenizer
from emu3.tokens.text import TextTokenizer

STATE_KEYS = ("gripper", "object", "goal")
# relative positions, derived from the three above: goal - gripper, object - gripper, goal - object
RELATIVE = {"goal_rel": ("goal", "gripper"), "object_rel": ("object", "gripper"), "push_dir": ("goal", "object")}
STATE_BEGIN, STATE_END = 190, 191  # <|extra_N|> indices of the state span markers
IGNORE = -100


@dataclass(frozen=True)
class ObsConfig:
    frames: int = 1  # 1: current frame; 2: previous + current
    state: tuple[str, ...] = ("gripper",)  # gripper = proprioception; object / goal are privileged
    state_range: float = 0.35  # positions are binned over [-r, r] metres

    def __post_init__(self) -> None:
        if self.frames not in (0, 1, 2):
            raise ValueError(f"frames must be 0, 1 or 2, got {self.frames}")
        if unknown := set(self.state) - set(STATE_KEYS) - set(RELATIVE):
            raise ValueError(f"unknown state keys {sorted(unknown)}; choose from {STATE_KEYS + tuple(RELATIVE)}")

    @property
    def privileged(self) -> tuple[str, ...]:
        return tuple(k for k in self.state if k != "gripper")


@dataclass(frozen=True)
class Layout:
    tok: TextTokenizer
    obs: ObsConfig
    chunk: int = 4
    action_bins: int = 256
    state_bins: int = 256

    @property
    def actions(self) -> ActionTokenizer:
        s = self.tok.special
        return ActionTokenizer(self.tok.vocab_size, 3, self.action_bins, -1.0, 1.0, self.chunk, s.boa, s.eoa)

    @property
    def states(self) -> ActionTokenizer:
        r = self.obs.state_range
        return ActionTokenizer(self.tok.vocab_size + self.action_bins, 3, self.state_bins, -r, r)

    @property
    def vocab_size(self) -> int:
        return self.tok.vocab_size + self.action_bins + self.state_bins

    def prompt(self, instruction: str, codes: list[np.ndarray], state: dict[str, np.ndarray]) -> list[int]:
        """Everything before the first action bin (ends with <boa>). `codes`: the frames' (8, 8) grids,
        oldest first (repeated to `obs.frames`)."""
        s = self.tok.special
        ids = [s.bos, *self.tok.encode(instruction)]
        frames = (
            [codes[0]] * (self.obs.frames - len(codes)) + list(codes)[-self.obs.frames :] if self.obs.frames else []
        )
        for grid in frames:
            ids += [s.boi, *(s.visual_start + np.asarray(grid).reshape(-1)).tolist(), s.eoi]
        ids.append(s.extra(STATE_BEGIN))
        for key in self.obs.state:
            value = state[RELATIVE[key][0]] - state[RELATIVE[key][1]] if key in RELATIVE else state[key]
            ids += self.states.encode(torch.as_tensor(value, dtype=torch.float32)).tolist()
        return ids + [s.extra(STATE_END), s.boa]

    def example(self, prompt: list[int], actions: np.ndarray, kind: str) -> Example:
        """A training example: the prompt (no loss) then the action bins and <eoa> (loss)."""
        span = self.actions.span(torch.as_tensor(actions, dtype=torch.float32))[1:]  # drop <boa>: it ends the prompt
        return Example(prompt + span, [IGNORE] * len(prompt) + span, kind)


def episode_examples(layout: Layout, data: dict[str, np.ndarray], codes: np.ndarray, instruction: str,
                     kind: str) -> list[Example]:  # fmt: skip
    """One example per recorded step of every successful episode. `codes`: (steps, 8, 8)."""
    out = []
    episode, step, k = data["episode"], data["step"], layout.chunk
    ok = data["success"]
    for i in range(len(episode)):
        e = episode[i]
        if not ok[e]:
            continue
        prev = i - 1 if step[i] > 0 else i
        acts = np.zeros((k, 3), np.float32)  # after the episode ends: stay still
        for j in range(k):
            if i + j < len(episode) and episode[i + j] == e:
                acts[j] = data["action"][i + j]
        state = {key: data[key][i] for key in STATE_KEYS}
        out.append(layout.example(layout.prompt(instruction, [codes[prev], codes[i]], state), acts, kind))
    return out
