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
