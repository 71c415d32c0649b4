"""Direct preference optimisation on stored (prompt, chosen, rejected) token sequences, plus the
paper's next-token term on the chosen sequence (spec 5.2).

A frozen copy of the starting model is the reference. Chosen and rejected rows go through the
policy in one concatenated forward ([chosen_1..B; rejected_1..B]), and likewise the reference.

With `guidance` g > 0 (text-to-image pairs only), the policy that DPO moves is the one the sampler
draws from: each token's distribution under classifier-free guidance, log_softmax(u + g (c - u)),
with c from the pair's own prompt and u from the same image after the model's negative prompt (its
emu3_pipeline.json). Both rows go through one forward ([chosen; rejected; their unconditional
twins]); the unconditional stream is trained too, away from the chosen image and towards the
rejected one. The NLL term stays on the conditional chosen sequence.

    emu3 dpo configs/dpo/tiny.yaml init=runs/sft/model data.corpus=runs/prefs
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from emu3.configuration import to_dict
from emu3.data.batches import mask_shared_tokens, pad, preference_pairs, unconditional_twin
from emu3.data.shards import Corpus
from emu3.model.decoder import Emu3Decoder
from emu3.recipes.common import DataConfig, autocast, check_device, compile_blocks, export_model
from emu3.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from emu3.train.losses import dpo_loss, guided_sequence_logps, sequence_logps
from emu3.train.metrics import MetricLogger, progress_bar
from emu3.train.optim import OptimConfig, build_optimizer, lr_at, set_lr


@dataclass(frozen=True)
class DPOConfig:
    init: str = ""  # the model to improve (a model folder); also the frozen reference
    out: str = "runs/dpo"
    vq: str | None = None  # vision tokenizer folder saved beside the result
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=4))  # batch_size = pairs per step
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-6, min_lr=5e-7, warmup_steps=10))
    beta: float = 0.1
    nll_weight: float = 0.2  # weight of the next-token loss on chosen sequences (0 = plain DPO)
    # True: no loss where chosen and rejected hold the same token (data.batches.mask_shared_tokens), so
    # the margin and the NLL term count only the tokens that differ. For pairs of images of one grid.
    mask_shared: bool = False
    # > 0: DPO on the guided distribution at this scale (see the module doc); 0: on the conditional one
    guidance: float = 0.0
    # > 0: DPO-Positive (losses.dpo_loss): a penalty of this weight inside the margin on the chosen
    # sequence's log-likelihood falling below the reference's (against likelihood displacement)
    positive: float = 0.0
    steps: int = 100
    save_every: int = 50
    log_every: int = 10
    resume: bool = True
    bf16: bool = True
    compile: bool = False  # torch.compile each decoder Block of the policy and the reference (as TrainConfig)
    device: str = "cpu"
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.init:
            raise ValueError("init= is required: the model folder to start from (and the reference)")
        if not self.data.corpus:
            raise ValueError("data.corpus is required: a preference corpus of chosen/rejected pairs")
        if self.beta <= 0 or self.nll_weight < 0:
            raise ValueError("beta must be positive and nll_weight non-negative")
        if self.positive < 0:
            raise ValueError(f"positive must be 0 (off) or a positive weight, got {self.positive}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be 0 (off) or a positive scale, got {self.guidance}")


class PairLogps(nn.Module):
    """Summed log-probs of [chosen; rejected] rows in one forward -> (chosen (B,), rejected (B,),
    chosen conditional (B,)). With `guidance` > 0 the batch is [chosen; rejected; their unconditional
    twins], the first two are guided log-probs and the third the conditional ones (for the NLL term)."""

    def __init__(self, model: Emu3Decoder, guidance: float = 0.0) -> None:
        super().__init__()
        self.model, self.guidance = model, guidance

    def forward(self, tokens: Tensor, input_pos: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hidden, weight = self.model.hidden(tokens, input_pos), self.model.lm_head.weight
        if not self.guidance:
            chosen, rejected = sequence_logps(hidden, weight, labels).chunk(2)
            return chosen, rejected, chosen
        half = len(tokens) // 2
        guided, cond = guided_sequence_logps(hidden[:half], hidden[half:], weight, labels[:half], labels[half:],
                                             self.guidance)  # fmt: skip
        chosen, rejected = guided.chunk(2)
        return chosen, rejected, cond[: half // 2]


def unconditional_pairs(pairs: list[tuple], init: str, tok) -> list[tuple]:
    """Each pair's two sequences after the model's negative prompt (its pipeline config's)."""
    from emu3.generate.pipeline import PipelineConfig

    negative = [tok.special.bos, *tok.encode(PipelineConfig.read(init).negative_prompt)]
    return [(unconditional_twin(c, negative, tok.special.boi), unconditional_twin(r, negative, tok.special.boi))
            for c, r in pairs]  # fmt: skip


def main(cfg: DPOConfig) -> Path:
    from emu3.convert.decoder import load_decoder
    from emu3.tokens.text import load_text_tokenizer

    # ---- set-up
    check_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tok = load_text_tokenizer(cfg.init)
    policy = load_decoder(cfg.init, dtype=torch.float32, device=cfg.device).train()
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    if cfg.compile:
        compile_blocks(policy)
        compile_blocks(reference)
    pol, ref = PairLogps(policy, cfg.guidance), PairLogps(reference, cfg.guidance)
    optimizer = build_optimizer(policy, cfg.optim)
    out, state = Path(cfg.out), TrainState()
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, policy, optimizer)
    pairs = preference_pairs(list(Corpus(cfg.data.corpus)))
    twins = unconditional_pairs(pairs, cfg.init, tok) if cfg.guidance else None
    if cfg.mask_shared:
        pairs = [mask_shared_tokens(c, r) for c, r in pairs]
        if twins is not None:
            twins = [mask_shared_tokens(c, r) for c, r in twins]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.data.seed)).tolist()
    log = MetricLogger(out / "metrics.jsonl", every=cfg.log_every)
    print(f"DPO on {len(pairs)} preference pairs, beta {cfg.beta}, NLL weight {cfg.nll_weight}"
          + (", shared tokens masked" if cfg.mask_shared else "")
          + (f", guided at {cfg.guidance}" if cfg.guidance else "")
          + (f", DPO-Positive weight {cfg.positive}" if cfg.positive else ""))  # fmt: skip

    # ---- loop
    bar = progress_bar(cfg.steps, state.step, enabled=True)
    while state.step < cfg.steps:
        started = time.perf_counter()
        set_lr(optimizer, lr := lr_at(state.step, cfg.steps, cfg.optim))
        chosen_idx = [order[(state.position + i) % len(pairs)] for i in range(cfg.data.batch_size)]
        rows = [pairs[i][0] for i in chosen_idx] + [pairs[i][1] for i in chosen_idx]
        if twins is not None:
            rows += [twins[i][0] for i in chosen_idx] + [twins[i][1] for i in chosen_idx]
        batch = pad(rows, tok.special.pad)
        inputs = (batch.tokens.to(cfg.device), batch.input_pos.to(cfg.device), batch.labels.to(cfg.device))
        with autocast(cfg.bf16, cfg.device):
            pol_c, pol_r, pol_cond = pol(*inputs)
            with torch.no_grad():
                ref_c, ref_r, _ = ref(*inputs)
            preference = dpo_loss(pol_c, pol_r, ref_c, ref_r, cfg.beta, cfg.positive).mean()
            n_chosen = (batch.labels[: cfg.data.batch_size, 1:] != -100).sum().clamp_min(1).to(pol_c.device)
            nll = -pol_cond.sum() / n_chosen
            loss = preference + cfg.nll_weight * nll
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        state.step, state.position = state.step + 1, state.position + cfg.data.batch_size
        margin = ((pol_c - ref_c) - (pol_r - ref_r)).mean().item()
        accuracy = ((pol_c - ref_c) > (pol_r - ref_r)).float().mean().item()
        log.log(state.step, loss=loss.item(), dpo_loss=preference.item(), nll=nll.item(), margin=margin,
                reward_accuracy=accuracy, lr=lr, grad_norm=float(grad_norm),
                seconds=time.perf_counter() - started)  # fmt: skip
        if state.step % cfg.save_every == 0 or state.step == cfg.steps:
            save_checkpoint(out, policy.state_dict(), optimizer, state, config=to_dict(cfg))

    final = export_model(policy.eval(), tok, out / "model", cfg.vq, pipeline_from=cfg.init)
    log.plot(out / "curves.png", keys=("loss", "dpo_loss", "nll"))
    print(f"saved {final}")
    return final
