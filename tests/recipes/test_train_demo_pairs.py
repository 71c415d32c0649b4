"""train-demo's preference data: which samples of one prompt become (better, worse) pairs."""

from emu3.recipes.train_demo import ranked_pairs


def test_every_two_samples_far_enough_apart_make_a_pair_better_first():
    assert ranked_pairs([1.0, 0.0, 0.9, 0.5]) == [(0, 1), (0, 3), (2, 1), (3, 1), (2, 3)]
    assert ranked_pairs([0.0, 1.0]) == [(1, 0)]  # the better sample comes first whatever its position


def test_close_or_tied_scores_make_no_pair():
    assert ranked_pairs([0.5, 0.5, 0.6]) == []
    assert ranked_pairs([0.5, 0.5, 0.6], min_gap=0.05) == [(2, 0), (2, 1)]
