"""The generation engine on tiny random models: CFG batching, grids, padding, greedy, seeds, parity."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emu3.generate.constraints import FREE, VISUAL, image_plan, text_plan, video_plan
from emu3.generate.generator import Generator, VocabLayout
from emu3.generate.guidance import cfg_logits
from emu3.generate.sampling import SamplingConfig
from emu3.model.config import tiny
from emu3.model.init import build_decoder

PAD, EOS, EOL, EOF, EOI = 0, 2, 4, 6, 7
VOCAB = VocabLayout(visual_start=300, codebook_size=200, pad_id=PAD, eos_id=EOS)


@pytest.fixture(scope="module")
def model():
    return build_decoder(tiny(vocab_size=512), seed=0).eval()


@pytest.fixture(scope="module")
def gen(model):
    return Generator(model, VOCAB)


def _prompt(n, seed):
    return torch.randint(8, 300, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _plan(h, w):
    return image_plan(h, w, EOL, EOF, EOI, EOS)


def _separate_pass_cfg(gen, prompts, negatives, plans, scale, sampling, seed):
    """Reference: the official formulation, where the conditional and the unconditional stream are
    two forwards with two caches each step. Token choice uses the same `pick` rule."""
    from emu3.generate.generator import _left_pad

    model = gen.model
    rule = gen.step_rule(plans, scale, sampling=sampling, seed=seed)
    streams = []
    for rows in (prompts, negatives):
        tokens, pos = _left_pad(rows, PAD, torch.device("cpu"))
        cache = model.new_cache(len(rows), tokens.shape[1] + rule.plan.shape[1])
        streams.append([cache, model.hidden(tokens, pos, cache)[:, -1], pos.max(1).values + 1])
    out = []
    for step in range(rule.plan.shape[1]):
        tok = gen.pick(rule, torch.cat([streams[0][1], streams[1][1]]), step)
        out.append(tok)
        for s in streams:
            s[1] = model.hidden(tok[:, None], s[2][:, None], s[0])[:, -1]
            s[2] = s[2] + 1
    return torch.stack(out, 1)


@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=0), SamplingConfig(temperature=1.0, top_k=50)])
def test_batched_cfg_equals_separate_passes(model, gen, sampling):
    prompts = [_prompt(9, 1), _prompt(5, 2)]
    negatives = [_prompt(3, 3), _prompt(7, 4)]
    plans = [_plan(3, 4), _plan(2, 5)]
    ours = gen.generate(prompts, plans, negative_prompts=negatives, guidance=3.0, sampling=sampling, seed=11)
    with torch.inference_mode():
        ref = _separate_pass_cfg(gen, prompts, negatives, plans, 3.0, sampling, seed=11)
    assert torch.equal(ours.tokens, ref)


def test_padded_batch_equals_rows_one_by_one(gen):
    prompts = [_prompt(4, 5), _prompt(12, 6), _prompt(8, 7)]
    negatives = [_prompt(2, 8), _prompt(6, 9), _prompt(3, 10)]
    greedy = SamplingConfig(temperature=0)
    plans = [_plan(2, 3), _plan(3, 3), _plan(2, 2)]
    batch = gen.generate(prompts, plans, negative_prompts=negatives, guidance=[1.0, 2.0, 4.0], sampling=greedy)
    for i in range(3):
        alone = gen.generate(
            [prompts[i]], [plans[i]], negative_prompts=[negatives[i]], guidance=[1.0, 2.0, 4.0][i], sampling=greedy
        )
        n = plans[i].numel()
        assert torch.equal(batch.tokens[i, :n], alone.tokens[0, :n])
        assert (batch.tokens[i, n:] == PAD).all()


def test_temperature_zero_is_argmax_of_the_full_forward(model, gen):
    prompt = _prompt(6, 12)
    out = gen.generate([prompt], [torch.full((10,), FREE)], sampling=SamplingConfig(temperature=0))
    seq = list(prompt)
    for _ in range(10):
        logits = model(torch.tensor([seq]))[0, -1]
        logits[PAD] = float("-inf")
        seq.append(int(logits.argmax()))
        if seq[-1] == EOS:
            break
    n = int(out.lengths[0])
    assert out.tokens[0, :n].tolist() == seq[len(prompt) :][:n]


def test_same_seed_same_tokens_other_seed_other_tokens(gen):
    args = ([_prompt(5, 13)], [_plan(4, 4)])
    a = gen.generate(*args, seed=1).tokens
    assert torch.equal(a, gen.generate(*args, seed=1).tokens)
    assert not torch.equal(a, gen.generate(*args, seed=2).tokens)


def _assert_valid_grid(tokens, frames, h, w):
    body = tokens.view(-1)
    n = frames * (h * (w + 1) + 1)
    assert body[n:].tolist() == [EOI, EOS]
    per_frame = body[:n].view(frames, h * (w + 1) + 1)
    assert (per_frame[:, -1] == EOF).all()
    rows = per_frame[:, :-1].reshape(frames, h, w + 1)
    assert (rows[..., -1] == EOL).all()
    visual = rows[..., :-1]
    assert ((visual >= 300) & (visual < 500)).all()


@settings(max_examples=12, deadline=None)
@given(h=st.integers(1, 4), w=st.integers(1, 5), seed=st.integers(0, 2**16), cfg=st.booleans())
def test_generated_images_are_always_valid_grids(gen, h, w, seed, cfg):
    neg = [_prompt(2, seed + 1)] if cfg else None
    out = gen.generate(
        [_prompt(3, seed)], [_plan(h, w)], negative_prompts=neg, seed=seed, sampling=SamplingConfig(temperature=1.5)
    )
    _assert_valid_grid(out.tokens[0], 1, h, w)
    assert int(out.lengths[0]) == h * (w + 1) + 3


def test_video_plan_gives_valid_frames(gen):
    plan = video_plan(3, 2, 3, EOL, EOF, EOI, EOS)
    out = gen.generate([_prompt(4, 20)], [plan], seed=0)
    _assert_valid_grid(out.tokens[0], 3, 2, 3)


def test_text_stops_at_eos_and_pads_after(model):
    # Make EOS the overwhelmingly likely answer, so rows end early and the rest is padding.
    biased = build_decoder(tiny(vocab_size=512), seed=0).eval()
    with torch.no_grad():
        biased.lm_head.weight[EOS] = biased.lm_head.weight[EOS] * 0 + 5 * biased.norm.weight.sign()
    out = Generator(biased, VOCAB).generate(
        [_prompt(4, 1), _prompt(6, 2)], [text_plan(40)] * 2, sampling=SamplingConfig(temperature=0)
    )
    for row, n in zip(out.tokens, out.lengths, strict=True):
        assert row[int(n) - 1] == EOS and (row[int(n) :] == PAD).all()


def test_bad_requests_are_clear_errors(gen):
    with pytest.raises(ValueError, match="one plan per prompt"):
        gen.generate([[1, 2]], [])
    with pytest.raises(ValueError, match="negative prompt per prompt"):
        gen.generate([[1, 2]], [_plan(1, 1)], negative_prompts=[])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        gen.generate([[1, 9999]], [_plan(1, 1)])
    with pytest.raises(ValueError, match="exceed the model's context"):
        gen.generate([_prompt(10, 0)], [_plan(30, 30)])


def test_sliced_visual_logits_equal_full_vocab_choice(gen):
    """The visual-only projection picks exactly what masking the full vocabulary would pick."""
    from emu3.generate.constraints import choose, constrain

    hidden = torch.randn(4, 64)
    rule = gen.step_rule([_plan(2, 2)] * 2, [3.0, 1.5], sampling=SamplingConfig(temperature=0))
    assert rule.kinds[:3] == ["visual", "visual", "forced"]
    full = cfg_logits(gen.model.logits(hidden), rule.scale)
    expected = choose(rule.plan[:, 0], constrain(full, rule.plan[:, 0], gen.masks).argmax(-1))
    assert torch.equal(gen.pick(rule, hidden, 0), expected)


def test_visual_steps_never_sample_text(gen):
    plan = torch.full((20,), VISUAL)
    out = gen.generate([_prompt(3, 0)], [plan], seed=3, sampling=SamplingConfig(temperature=2.0))
    assert ((out.tokens >= 300) & (out.tokens < 500)).all()
