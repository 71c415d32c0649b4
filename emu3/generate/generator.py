"""Generator: prefill once, then a decode loop over a static KV cache. It knows only token ids.

One call serves a batch of requests of different prompt lengths (left padding with per-row
positions) and, with classifier-free guidance, their negative prompts as extra rows of the same
batch: [cond_0 .. cond_{B-1}; uncond_0 .. uncond_{B-1}], one forward per step for all of them.
What may be sampled at each step comes from a per-row plan (constraints.py), so image grids are
valid by construction. The loop makes no host round trip except an every-16-steps "all rows
finished?" check for free-length text.

Shapes: B requests, R = B or 2B batch rows, P padded prompt length, N new tokens, V vocab.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from emu3.generate.constraints import VISUAL, choose, constrain, stack_plans, token_set_masks
from emu3.generate.guidance import Schedule, cfg_logits, scheduled_scale
from emu3.generate.sampling import SamplingConfig, sample
from emu3.model.decoder import Emu3Decoder

StepCallback = Callable[[int, Tensor], None]  # (step, new tokens (B,)) after each step


@dataclass(frozen=True)
class VocabLayout:
    """The ids the generator must know: where visual tokens live, and the pad / end ids."""

    visual_start: int
    codebook_size: int
    pad_id: int
    eos_id: int


@dataclass
class GenerationOutput:
    tokens: Tensor  # (B, N) generated ids; pad after a row's end
    lengths: Tensor  # (B,) tokens up to and including EOS (or N)


class Generator:
    def __init__(self, model: Emu3Decoder, vocab: VocabLayout) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.masks = token_set_masks(model.cfg.vocab_size, vocab.visual_start, vocab.codebook_size, vocab.pad_id)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        plans: Sequence[Tensor],
        *,
        negative_prompts: Sequence[Sequence[int]] | None = None,
        guidance: float | Sequence[float] = 3.0,
        schedule: Schedule = "constant",
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        callback: StepCallback | None = None,
    ) -> GenerationOutput:
        """Generate for each prompt the tokens its plan describes.

        Args:
            prompts: B token-id lists (e.g. from emu3.tokens.format).
            plans: B plans (constraints.py); their lengths bound the new tokens per row.
            negative_prompts: B unconditional prompts; turns on classifier-free guidance.
            guidance: one scale, or one per request (ignored without negative prompts).
            sampling: temperature / top-k / top-p (default: plain sampling at temperature 1).
            seed: seeds the sampler's torch.Generator (None: nondeterministic).
        """
        b = len(prompts)
        if b == 0 or len(plans) != b:
            raise ValueError(f"need one plan per prompt, got {len(prompts)} prompts and {len(plans)} plans")
        use_cfg = negative_prompts is not None
        if use_cfg and len(negative_prompts) != b:
            raise ValueError(f"need one negative prompt per prompt, got {len(negative_prompts)} for {b}")
        rows = list(prompts) + (list(negative_prompts) if use_cfg else [])
        if any(len(r) == 0 for r in rows):
            raise ValueError("every prompt must hold at least one token")
        bad = sorted({t for r in rows for t in r if not 0 <= t < self.model.cfg.vocab_size})
        if bad:
            raise ValueError(f"token id(s) {bad[:5]} are outside the model's vocabulary of {self.model.cfg.vocab_size}")
        device, vocab = self.device, self.vocab
        n_new = max(p.numel() for p in plans)
        tokens, positions = _left_pad(rows, vocab.pad_id, device)  # (R, P)
        capacity = tokens.shape[1] + n_new
        if capacity > self.model.cfg.max_seq_len:
            raise ValueError(
                f"prompt ({tokens.shape[1]} tokens) + {n_new} new tokens exceed the model's context of "
                f"{self.model.cfg.max_seq_len}; shorten the prompt or ask for a smaller image"
            )
        rule = self.step_rule(plans, guidance if use_cfg else None, schedule, sampling, seed)
        cache = self.model.new_cache(len(rows), capacity)
        hidden = self.model.hidden(tokens, positions, cache)[:, -1]  # (R, D)
        next_pos = positions.max(dim=1).values + 1  # (R,)
        out = torch.full((b, n_new), vocab.pad_id, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        lengths = torch.full((b,), n_new, dtype=torch.long, device=device)

        for step in range(n_new):
            picked = torch.where(done, vocab.pad_id, self.pick(rule, hidden, step))  # (B,)
            out[:, step] = picked
            newly_done = ~done & (picked == vocab.eos_id)
            lengths = torch.where(newly_done, step + 1, lengths)
            done = done | newly_done
            if callback is not None:
                callback(step, picked)
            if step == n_new - 1 or (step % 16 == 15 and bool(done.all())):
                break
            feed = torch.cat([picked, picked]) if use_cfg else picked  # (R,)
            hidden = self.model.hidden(feed[:, None], next_pos[:, None], cache)[:, -1]
            next_pos = next_pos + 1
        return GenerationOutput(tokens=out, lengths=lengths)

    def step_rule(
        self,
        plans: Sequence[Tensor],
        guidance: float | Sequence[float] | None,
        schedule: Schedule = "constant",
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
    ) -> StepRule:
        """Everything `pick` needs besides hidden states, prepared once per call on the host."""
        plan = stack_plans([p.to("cpu", torch.long) for p in plans], self.vocab.pad_id)  # (B, N)
        # Per step, over all rows: nothing to sample, only visual tokens to sample, or anything.
        sampled = plan < 0
        visual_only = (plan == VISUAL) | ~sampled
        kinds = [
            "forced" if not s else "visual" if v else "full"
            for s, v in zip(sampled.any(0).tolist(), visual_only.all(0).tolist(), strict=True)
        ]
        device = self.device
        rng = torch.Generator(device=device)
        rng.manual_seed(seed) if seed is not None else rng.seed()
        scale = None
        if guidance is not None:
            scale = torch.as_tensor(guidance, dtype=torch.float32, device=device).expand(plan.shape[0])
        return StepRule(
            plan=plan.to(device),
            kinds=kinds,
            scale=scale,
            schedule=schedule,
            sampling=sampling or SamplingConfig(),
            rng=rng,
            plan_len=(plan != self.vocab.pad_id).sum(1).clamp_min(1).to(device),
        )

    def pick(self, rule: StepRule, hidden: Tensor, step: int) -> Tensor:
        """Next token per request (B,) from last hidden states (R, D) of [cond; uncond] rows.

        Steps where every row is forced skip the output projection; steps where rows may only take
        visual tokens project onto the codebook's rows of lm_head alone. Both are exact: CFG on
        log-probabilities only shifts each row by a constant, which neither sampling nor top-k sees."""
        step_plan = rule.plan[:, step]
        kind = rule.kinds[step]
        if kind == "forced":
            return step_plan
        vocab = self.vocab
        if kind == "visual":
            logits = self.model.logits(hidden, slice(vocab.visual_start, vocab.visual_start + vocab.codebook_size))
        else:
            logits = self.model.logits(hidden)
        cond = logits[: step_plan.shape[0]]  # min-p's reference: the conditional rows (all rows without CFG)
        if rule.scale is not None:
            progress = torch.full_like(rule.scale, step) / rule.plan_len
            logits = cfg_logits(logits, scheduled_scale(rule.scale, progress, rule.schedule))  # (B, V')
        if kind == "visual":
            sampled = sample(logits, rule.sampling, rule.rng, reference=cond) + vocab.visual_start
        else:
            masks = self.masks.to(logits.device)
            logits, cond = constrain(logits, step_plan, masks), constrain(cond, step_plan, masks)
            sampled = sample(logits, rule.sampling, rule.rng, reference=cond)
        return choose(step_plan, sampled)


@dataclass
class StepRule:
    plan: Tensor  # (B, N)
    kinds: list[str]  # per step: "forced" | "visual" | "full"
    scale: Tensor | None  # (B,) guidance, None without CFG
    schedule: Schedule
    sampling: SamplingConfig
    rng: torch.Generator
    plan_len: Tensor  # (B,) tokens each row's plan really asks for


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Token rows -> (R, P) ids left-padded with pad_id, and positions (R, P) with -1 on padding."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
        positions[i, width - len(r) :] = torch.arange(len(r))
    return tokens.to(device), positions.to(device)
