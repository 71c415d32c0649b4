"""Sampling kept by a model folder for families of prompts (`PipelineConfig.prompt_sampling`): the demo
model draws "the digit 7" at guidance 3 and temperature 0.3, and its shapes scenes at 1.5 and 0.6."""

import json

import pytest
import torch

from emu3.generate.pipeline import PipelineConfig, PromptSampling
from emu3.generate.sampling import SamplingConfig
from tests.helpers.tiny_pipeline import tiny_pipeline

DIGITS = PromptSampling(r"the digit [0-9]", guidance=1.0, temperature=0.25)
DIGIT_SAMPLING = SamplingConfig(temperature=0.25, top_k=5)  # DIGITS over the fixture's top-k


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0).with_config(prompt_sampling=(DIGITS,), guidance=2.0, temperature=1.0, top_k=5)


def test_a_prompt_takes_the_first_family_it_matches_whole_or_the_defaults(pipe):
    cfg = pipe.cfg
    assert cfg.for_prompt(" the digit 7 ") == (1.0, SamplingConfig(temperature=0.25, top_k=5, top_p=1.0))
    assert cfg.for_prompt("the digit 7 and a circle") == (2.0, cfg.sampling())  # the whole prompt must match
    assert cfg.for_prompt("a red circle") == (2.0, cfg.sampling())
    later = PromptSampling(r"the digit .*", guidance=9.0)
    assert pipe.with_config(prompt_sampling=(DIGITS, later)).cfg.for_prompt("the digit 7")[0] == 1.0
    assert pipe.with_config(prompt_sampling=(later,)).cfg.for_prompt("the digit 7") == (9.0, cfg.sampling())


def test_mixed_prompts_are_each_drawn_as_their_family_asks_in_prompt_order(pipe):
    codes = pipe.text_to_image_codes(["a circle", "the digit 3", "a square"], num_images=2, seed=4)
    plain = pipe.with_config(prompt_sampling=())
    shapes = plain.text_to_image_codes(["a circle", "a square"], num_images=2, seed=4)
    digit = plain.text_to_image_codes(["the digit 3"], num_images=2, guidance=1.0,
                                      sampling=SamplingConfig(temperature=0.25, top_k=5), seed=4)  # fmt: skip
    assert torch.equal(codes, torch.cat([shapes[:2], digit, shapes[2:]]))
    assert not torch.equal(digit, plain.text_to_image_codes(["the digit 3"], num_images=2, seed=4))  # it matters


def test_a_call_that_sets_guidance_or_sampling_overrides_the_family(pipe):
    plain = pipe.with_config(prompt_sampling=())
    sampling = SamplingConfig(temperature=0.7, top_k=3)
    ours = pipe.text_to_image_codes(["the digit 3"], guidance=2.5, sampling=sampling, seed=1)
    assert torch.equal(ours, plain.text_to_image_codes(["the digit 3"], guidance=2.5, sampling=sampling, seed=1))
    only_guidance = pipe.text_to_image_codes(["the digit 3"], guidance=2.5, seed=1)  # sampling still the family's
    expected = plain.text_to_image_codes(["the digit 3"], guidance=2.5, sampling=DIGIT_SAMPLING, seed=1)
    assert torch.equal(only_guidance, expected)


def test_the_families_round_trip_through_the_folder_and_bad_ones_are_refused(tmp_path):
    cfg = PipelineConfig(prompt_sampling=(DIGITS, PromptSampling("x+", top_k=2)))
    cfg.write(tmp_path)
    assert PipelineConfig.read(tmp_path) == cfg
    raw = json.loads((tmp_path / "emu3_pipeline.json").read_text())
    raw["prompt_sampling"] = [{"pattern": "x", "guidance_scale": 2.0}]
    (tmp_path / "emu3_pipeline.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="emu3_pipeline.json.*prompt_sampling"):
        PipelineConfig.read(tmp_path)
    with pytest.raises(ValueError, match="not a regular expression"):
        PromptSampling("the digit [0-9")


def test_the_command_line_leaves_sampling_to_the_model_unless_asked(pipe):
    import argparse

    from emu3.commands import _sampling

    assert _sampling(pipe, argparse.Namespace(temperature=None, top_k=None, min_p=None)) is None
    asked = _sampling(pipe, argparse.Namespace(temperature=0.5, top_k=None, min_p=None))
    assert asked == SamplingConfig(temperature=0.5, top_k=5, top_p=1.0)


def test_the_server_draws_a_prompt_with_its_familys_sampling_unless_the_request_sets_it(pipe):
    pytest.importorskip("pydantic")
    from emu3.serve.config import Limits
    from emu3.serve.schemas import ImageGenerationRequest
    from emu3.serve.tasks import image_job

    def first(**body):
        return image_job(pipe, Limits(), ImageGenerationRequest(**body), 512).requests[0]

    digit = first(prompt="the digit 3", size="32x32")
    assert (digit.guidance, digit.sampling.temperature, digit.negative_prompt) == (1.0, 0.25, None)
    asked = first(prompt="the digit 3", size="32x32", guidance_scale=3.0, temperature=0.9)
    assert (asked.guidance, asked.sampling.temperature, asked.sampling.top_k) == (3.0, 0.9, 5)
    shape = first(prompt="a circle", size="32x32")
    assert (shape.guidance, shape.sampling.temperature) == (2.0, 1.0)


def test_the_demo_recipe_writes_the_digit_family_and_its_captions_match_it(tmp_path):
    pytest.importorskip("sklearn")
    from emu3.recipes.train_demo import DemoConfig, _write_pipeline_defaults
    from emu3.worlds import digits

    _write_pipeline_defaults(tmp_path, DemoConfig())
    (family,) = PipelineConfig.read(tmp_path).prompt_sampling
    assert all(family.matches(digits.caption(d)) for d in range(10)) and not family.matches("the digit 10")
    assert (family.guidance, family.temperature) == (
        digits.DRAW_SAMPLING["guidance"],
        digits.DRAW_SAMPLING["temperature"],
    )
    _write_pipeline_defaults(tmp_path, DemoConfig(use_digits=False))
    assert PipelineConfig.read(tmp_path).prompt_sampling == ()
