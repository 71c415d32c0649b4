"""`compile=true`: every decoder Block compiled in place; same state_dict keys, same loss and gradients."""

import copy
import time
from types import SimpleNamespace

import pytest
import torch

from emu3.recipes.common import DataConfig, ModelConfig, TrainConfig, compile_blocks, model_for
from emu3.train.losses import LossWeights, next_token_loss, token_classes

VOCAB = 300


def _cfg(**over) -> TrainConfig:
    model = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, max_seq_len=128)
    return TrainConfig(tokenizer="unused", data=DataConfig(corpus="unused"), model=model, **over)


_TOK = SimpleNamespace(vocab_size=VOCAB, special=SimpleNamespace(pad=0))


def _loss_and_grads(model, bf16: bool):
    torch.manual_seed(1)
    tokens = torch.randint(5, VOCAB, (2, 48))
    pos = torch.cat([torch.arange(20), torch.arange(28)]).expand(2, 48)  # two packed documents per row
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = model.hidden(tokens, pos)
        loss = next_token_loss(hidden, model.lm_head.weight, tokens, token_classes(tokens, 200, 64), LossWeights())
    loss.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.loss.detach(), grads


def _check_same(eager, compiled, bf16: bool):
    loss_e, grads_e = _loss_and_grads(eager, bf16)
    loss_c, grads_c = _loss_and_grads(compiled, bf16)
    tol = 2e-2 if bf16 else 1e-4
    assert torch.allclose(loss_c, loss_e, rtol=tol, atol=tol), (loss_c, loss_e)
    assert grads_c.keys() == grads_e.keys()
    for name, g in grads_e.items():
        scale = g.abs().max().item() + 1e-6
        assert (grads_c[name] - g).abs().max().item() <= (0.1 if bf16 else 1e-3) * scale, name


def test_compile_keeps_state_dict_keys():
    eager, compiled = model_for(_cfg(), _TOK), model_for(_cfg(compile=True), _TOK)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert not any("_orig_mod" in k for k in compiled.state_dict())
    assert all(b._compiled_call_impl is not None for b in compiled.blocks)
    assert all(b._compiled_call_impl is None for b in eager.blocks)
    compiled.load_state_dict(eager.state_dict(), strict=True)  # checkpoints load both ways
    mine, theirs = compiled.state_dict(), eager.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in theirs.items())


def test_compiled_blocks_trace_to_the_same_step():
    """Dynamo + AOT autograd (the graph capture that compile=true relies on, without inductor's C++
    code generation, which takes tens of seconds on a cold CPU cache): same loss, same gradients."""
    eager = model_for(_cfg(), _TOK)
    compiled = compile_blocks(copy.deepcopy(eager), backend="aot_eager", fullgraph=True)
    _check_same(eager, compiled, bf16=False)


@pytest.mark.slow
@pytest.mark.parametrize("bf16", [True, False])
def test_compile_true_gives_the_eager_step(bf16):
    """The recipes' compile=true (inductor): one training step's loss and gradients match eager."""
    eager = model_for(_cfg(), _TOK)
    compiled = model_for(_cfg(compile=True, activation_checkpointing=True), _TOK)
    compiled.load_state_dict(eager.state_dict())
    start = time.perf_counter()
    _check_same(eager, compiled, bf16)
    print(f"compile + step: {time.perf_counter() - start:.1f}s")
