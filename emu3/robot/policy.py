"""A trained policy folder and closed-loop acting: observation -> a chunk of actions.

Folder layout (written by `emu3 robot train`, shipped under emu3/assets/robot_policy/<env>/):
    policy.json        env, instruction, observation config, chunk, bins
    model.safetensors + config.json    the decoder (bf16)
    tokenizer files    the text tokenizer (its special block and visual codes)
    vq/                the vision tokenizer for the 64x64 frames (or the folder policy.json's "vq" names)
Decoding is greedy and constrained: at each of the chunk * 3 positions only action bins can be chosen
(UniVLA restricts sampling to the action ids the same way); <eoa> is then appended, not sampled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emu3.convert.decoder import load_decoder
from emu3.convert.vq import load_vision_tokenizer
from emu3.model.decoder import Emu3Decoder
from emu3.robot.env import Observation
from emu3.robot.sequence import Layout, ObsConfig
from emu3.tokens.text import load_text_tokenizer
from emu3.vision.vq import VQModel

POLICY_FILE = "policy.json"
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "robot_policy"


def shipped_policy(env_id: str) -> Path:
    return ASSETS / env_id


def frames_to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) floats in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def encode_frames(
    vq: VQModel, frames: np.ndarray, batch: int = 128, progress: Callable[[int], object] | None = None
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, h, w) int16 codes; `progress(n)` is called after each batch of n frames."""
    out = []
    for i in range(0, len(frames), batch):
        out.append(vq.encode_image(frames_to_pixels(frames[i : i + batch])).numpy())
        if progress is not None:
            progress(len(out[-1]))
    return np.concatenate(out).astype(np.int16)


@dataclass
class Policy:
    decoder: Emu3Decoder
    vq: VQModel
    layout: Layout
    env_id: str
    instruction: str

    @classmethod
    def load(cls, folder: str | Path) -> Policy:
        folder = Path(folder)
        if not (folder / POLICY_FILE).is_file():
            raise FileNotFoundError(f"{folder} is not a robot policy folder (no {POLICY_FILE}); run `emu3 robot train`")
        meta = json.loads((folder / POLICY_FILE).read_text())
        obs = ObsConfig(frames=meta["obs"]["frames"], state=tuple(meta["obs"]["state"]),
                        state_range=meta["obs"]["state_range"])  # fmt: skip
        layout = Layout(load_text_tokenizer(folder), obs, meta["chunk"], meta["action_bins"], meta["state_bins"])
        decoder = load_decoder(folder, dtype=torch.float32).eval()
        vq = load_vision_tokenizer(folder / meta.get("vq", "vq")).eval()  # the shipped policies share ../vq
        return cls(decoder, vq, layout, meta["env"], meta["instruction"])

    def prompt(self, history: list[Observation]) -> list[int]:
        """Prompt ids for the latest observation (`history`: oldest first, at least one)."""
        frames = [o.frame for o in history[-max(1, self.layout.obs.frames) :]] if self.layout.obs.frames else []
        codes = list(encode_frames(self.vq, np.stack(frames))) if frames else [np.zeros((8, 8), np.int16)]
        last = history[-1]
        state = {"gripper": last.gripper, "goal": last.goal,
                 "object": last.object if last.object is not None else np.zeros(3, np.float32)}  # fmt: skip
        return self.layout.prompt(last.instruction, codes, state)

    @torch.no_grad()
    def act(self, history: list[Observation]) -> np.ndarray:
        """-> (chunk, 3) actions for the next chunk of steps."""
        return self.decode(self.prompt(history))

    @torch.no_grad()
    def decode(self, prompt: list[int]) -> np.ndarray:
        acts = self.layout.actions
        n = acts.chunk * acts.dims
        cache = self.decoder.new_cache(1, len(prompt) + n + 1)
        hidden = self.decoder.hidden(torch.tensor([prompt]), cache=cache)
        out = []
        for i in range(n):
            logits = self.decoder.logits(hidden[:, -1], slice(acts.first_id, acts.end_id))  # (1, bins)
            out.append(int(logits.argmax(-1)) + acts.first_id)
            if i + 1 < n:
                hidden = self.decoder.hidden(torch.tensor([[out[-1]]]), cache=cache)
        return acts.parse(out).numpy()
