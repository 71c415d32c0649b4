"""train-demo's preference data: which samples of one prompt become (better, worse) pairs."""

import pytest

from emu3.recipes.train_demo import ranked_pairs


def test_every_two_samples_far_enough_apart_make_a_pair_better_first():
    assert ranked_pairs([1.0, 0.0, 0.9, 0.5]) == [(0, 1), (0, 3), (2, 1), (3, 1), (2, 3)]
    assert ranked_pairs([0.0, 1.0]) == [(1, 0)]  # the better sample comes first whatever its position


def test_close_or_tied_scores_make_no_pair():
    assert ranked_pairs([0.5, 0.5, 0.6]) == []
    assert ranked_pairs([0.5, 0.5, 0.6], min_gap=0.05) == [(2, 0), (2, 1)]


def test_digit_prompts_follow_the_shapes_prompts_and_are_scored_by_the_ranking_judge():
    pytest.importorskip("sklearn")
    from emu3.recipes.train_demo import DemoConfig, dpo_prompts
    from emu3.worlds import digits, shapes

    cfg = DemoConfig(dpo_prompts=3, dpo_digit_prompts=12, image_size=24)
    prompts, scorers = dpo_prompts(cfg)
    shapes_only, _ = dpo_prompts(DemoConfig(dpo_prompts=3, image_size=24))
    assert prompts[:3] == shapes_only and len(prompts) == len(scorers) == 15  # the shapes prompts unchanged
    assert prompts[3:] == [digits.caption(i % 10) for i in range(12)]
    images, labels = digits.load_split("train", 24)
    seven = images[labels.tolist().index(7)]
    assert scorers[3 + 7](seven) == 1.0 and scorers[3 + 1](seven) == 0.0
    scene = shapes.sample_scene(__import__("random").Random(0))
    assert 0.0 <= scorers[0](shapes.render(scene, 24)) <= 2.0  # the checker's score of a shapes image


def test_sampled_pairs_hold_the_better_sample_first_with_the_prompt_masked(tmp_path):
    import torch

    from emu3.data.batches import preference_pairs
    from emu3.data.shards import Corpus
    from emu3.recipes.train_demo import sample_preference_pairs
    from emu3.tokens import format as fmt
    from emu3.tokens import templates
    from tests.helpers.tiny_pipeline import tiny_pipeline

    pipe = tiny_pipeline(seed=0).with_config(image_size=(16, 16))
    folder = pipe.save(tmp_path / "model")

    seen: list = []  # every scored image, scored 0, 0.5, 1, 0, ... in the order they come

    def score(image):
        seen.append((image.astype(float), [0.0, 0.5, 1.0][len(seen) % 3]))
        return seen[-1][1]

    def score_of(image):  # the score given to the scored image nearest to this one
        return min(seen, key=lambda item: abs(item[0] - image).mean())[1]

    prompts = ["a red circle", "two blue squares"]
    stats = sample_preference_pairs(folder, prompts, [score] * 2, tmp_path / "prefs", samples=3, seed=0)
    pairs = preference_pairs(list(Corpus(tmp_path / "prefs")))
    assert stats["pairs"] == len(pairs) >= 1
    h, w = pipe.latent_size()
    heads = [templates.t2i_prompt(p, h, w, pipe.tok, positive_suffix="") for p in prompts]
    for chosen, rejected in pairs:
        for ex in (chosen, rejected):
            (head,) = [x for x in heads if ex.tokens[: len(x)] == x]  # starts with exactly one of the prompts
            assert set(ex.labels[: len(head)]) == {-100} and ex.labels[len(head) :] == ex.tokens[len(head) :]
        codes = [next(s for s in fmt.parse(ex.tokens, pipe.tok) if isinstance(s, fmt.Image)).codes
                 for ex in (chosen, rejected)]  # fmt: skip
        better, worse = (score_of(im.astype(float)) for im in pipe.decode_images(torch.stack(codes)))
        assert better - worse >= 0.5  # the stored sequences are the images that were scored


def test_no_pairs_when_every_sample_scores_the_same(tmp_path):
    from emu3.recipes.train_demo import sample_preference_pairs
    from tests.helpers.tiny_pipeline import tiny_pipeline

    folder = tiny_pipeline(seed=0).with_config(image_size=(16, 16)).save(tmp_path / "model")
    with pytest.raises(SystemExit, match="no preference pairs"):
        sample_preference_pairs(folder, ["a red circle"], [lambda image: 0.5], tmp_path / "prefs", samples=2)


class _Loaded(Exception):
    pass


@pytest.mark.parametrize("bf16", [True, False])
def test_pairs_are_sampled_in_the_precision_training_asked_for(tmp_path, bf16):
    """bf16=false keeps DPO's sampling in fp32 too (the pipeline alone picks bf16 on a bf16 CPU)."""
    import torch

    from emu3.generate.pipeline import Pipeline
    from emu3.recipes.train_demo import DemoConfig, _preference_pairs
    from tests.helpers.tiny_pipeline import tiny_pipeline

    folder = tiny_pipeline(seed=0).with_config(image_size=(16, 16)).save(tmp_path / "model")
    load, loaded = Pipeline.load, []

    def spy(*args, **kwargs):  # the pipeline DPO samples from, then stop
        loaded.append(load(*args, **kwargs))
        raise _Loaded

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Pipeline, "load", staticmethod(spy))
        with pytest.raises(_Loaded):
            _preference_pairs(DemoConfig(bf16=bf16, dpo_prompts=1), folder, tmp_path / "prefs")
    dtype = next(loaded[0].decoder.parameters()).dtype
    if bf16:  # the pipeline's own choice for this device
        from emu3.model.precision import compute_dtype

        assert dtype == compute_dtype("auto", "cpu")
    else:
        assert dtype == torch.float32
