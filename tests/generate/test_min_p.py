"""min-p sampling, measured on the conditional distribution under guidance (contrastive decoding's
plausibility constraint): hand-computed filters, and what it does to guided generation."""

import math

import pytest
import torch

from emu3.generate.constraints import image_plan
from emu3.generate.generator import Generator, VocabLayout
from emu3.generate.guidance import cfg_logits
from emu3.generate.sampling import SamplingConfig, filter_min_p, sample
from emu3.generate.scheduler import Request, Scheduler
from emu3.model.config import tiny
from emu3.model.init import build_decoder

PAD, EOS, EOL, EOF, EOI = 0, 2, 4, 6, 7
VOCAB = VocabLayout(visual_start=300, codebook_size=200, pad_id=PAD, eos_id=EOS)


@pytest.fixture(scope="module")
def model():
    return build_decoder(tiny(vocab_size=512), seed=0).eval()


def _prompt(n, seed):
    return torch.randint(8, 300, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_filter_keeps_tokens_at_least_p_times_the_likeliest():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = filter_min_p(probs.log(), probs.log(), 0.3).isfinite()  # threshold 0.15
    assert kept.tolist() == [[True, True, True, False]]
    assert filter_min_p(probs.log(), probs.log(), 0.0).isfinite().all()  # 0 disables
    assert filter_min_p(probs.log(), probs.log(), 1.0).isfinite().tolist() == [[True, False, False, False]]


def test_under_guidance_the_conditional_distribution_decides():
    """Token 2 is nearly impossible under both streams, but 100x less so under the conditional one:
    guidance at 3 puts it first (p_cond^3 / p_uncond^2), min-p on the conditional rows removes it."""
    cond = torch.tensor([[0.6, 0.3999, 1e-4]]).log()
    uncond = torch.tensor([[0.5, 0.499999, 1e-6]]).log()
    guided = cfg_logits(torch.cat([cond, uncond]), 3.0)
    assert guided.argmax(-1).item() == 2
    greedy = SamplingConfig(temperature=0, min_p=0.05)
    assert sample(guided, SamplingConfig(temperature=0)).item() == 2
    assert sample(guided, greedy, reference=cond).item() == 0
    # Measured on the guided distribution itself (plain min-p), the stray token would stay.
    assert sample(guided, greedy).item() == 2
    hits = sample(guided.expand(4000, 3), SamplingConfig(min_p=0.05), torch.Generator().manual_seed(0),
                  reference=cond.expand(4000, 3))  # fmt: skip
    assert set(hits.tolist()) <= {0, 1} and (hits == 1).any()  # sampling still between the plausible two


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan])
def test_bad_min_p_is_refused(value):
    with pytest.raises(ValueError, match="min_p"):
        SamplingConfig(min_p=value)


def test_min_p_one_leaves_guidance_nothing_to_choose(model):
    """At min_p 1 only the conditional stream's likeliest token survives, so a guided image at any scale
    is the unguided greedy image; in the generator and in serve's scheduler alike."""
    gen = Generator(model, VOCAB)
    prompts, negatives = [_prompt(9, 1), _prompt(6, 2)], [_prompt(4, 3), _prompt(4, 4)]
    plans = [image_plan(3, 4, EOL, EOF, EOI, EOS)] * 2
    greedy = gen.generate(prompts, plans, sampling=SamplingConfig(temperature=0)).tokens
    guided = gen.generate(prompts, plans, negative_prompts=negatives, guidance=6.0, seed=3,
                          sampling=SamplingConfig(temperature=1.0, min_p=1.0)).tokens  # fmt: skip
    unfiltered = gen.generate(prompts, plans, negative_prompts=negatives, guidance=6.0,
                              sampling=SamplingConfig(temperature=0)).tokens  # fmt: skip
    assert torch.equal(guided, greedy)
    assert not torch.equal(unfiltered, greedy)  # the guidance would have changed the image
    sched = Scheduler(model, VOCAB, max_rows=4, max_len=96)
    tickets = [sched.submit(Request(p, plans[0], negative_prompt=n, guidance=6.0, seed=3,
                                    sampling=SamplingConfig(temperature=1.0, min_p=1.0)))
               for p, n in zip(prompts, negatives, strict=True)]  # fmt: skip
    sched.run_until_idle()
    for ticket, row in zip(tickets, greedy, strict=True):
        assert ticket.wait() == row.tolist()


def test_a_folder_keeps_min_p_for_every_prompt_family_and_the_command_line_can_change_it(tmp_path):
    import argparse

    from emu3.commands import _sampling
    from emu3.generate.pipeline import PipelineConfig, PromptSampling
    from tests.helpers.tiny_pipeline import tiny_pipeline

    cfg = PipelineConfig(min_p=0.1, prompt_sampling=(PromptSampling("the digit [0-9]", temperature=0.3),))
    cfg.write(tmp_path)
    assert PipelineConfig.read(tmp_path) == cfg
    assert cfg.sampling().min_p == 0.1 and cfg.for_prompt("the digit 3")[1].min_p == 0.1  # inherited
    own = PipelineConfig(min_p=0.1, prompt_sampling=(PromptSampling("the digit [0-9]", min_p=0.0),))
    own.write(tmp_path)
    assert PipelineConfig.read(tmp_path) == own and own.for_prompt("the digit 3")[1].min_p == 0.0
    pipe = tiny_pipeline(seed=0).with_config(min_p=0.1, top_k=5)
    assert _sampling(pipe, argparse.Namespace(temperature=None, top_k=None, min_p=None)) is None
    assert _sampling(pipe, argparse.Namespace(temperature=None, top_k=None, min_p=0.0)).min_p == 0.0
    with pytest.raises(SystemExit, match="min_p"):
        _sampling(pipe, argparse.Namespace(temperature=None, top_k=None, min_p=2.0))
    # The folder's min-p reaches the drawing: at 1 every guided image is the unguided greedy one.
    strict = pipe.with_config(min_p=1.0, temperature=1.0, guidance=5.0)
    greedy = pipe.with_config(min_p=0.0, temperature=0.0, guidance=1.0)
    assert torch.equal(strict.text_to_image_codes(["a circle"], seed=1), greedy.text_to_image_codes(["a circle"]))


def test_a_server_request_sets_min_p_over_the_folders_and_out_of_range_is_refused():
    pytest.importorskip("pydantic")
    from pydantic import ValidationError

    from emu3.serve.config import Limits
    from emu3.serve.schemas import ImageGenerationRequest, VideoGenerationRequest
    from emu3.serve.tasks import image_job, plan_video
    from tests.helpers.tiny_pipeline import tiny_pipeline

    pipe = tiny_pipeline(seed=0).with_config(min_p=0.1)
    image = image_job(pipe, Limits(), ImageGenerationRequest(prompt="a circle", size="32x32"), 512).requests[0]
    assert image.sampling.min_p == 0.1  # the folder's
    asked = image_job(pipe, Limits(), ImageGenerationRequest(prompt="a circle", size="32x32", min_p=0.5), 512)
    assert asked.requests[0].sampling.min_p == 0.5
    video = plan_video(pipe, Limits(), VideoGenerationRequest(prompt="a circle", frames=1, min_p=0.0), 512)
    assert video.sampling.min_p == 0.0
    with pytest.raises(ValidationError, match="min_p"):
        ImageGenerationRequest(prompt="a circle", min_p=1.5)
