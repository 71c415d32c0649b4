"""train-demo's corpus: which world records go in, and how often."""

from collections import Counter

import pytest

from emu3.recipes.train_demo import DemoConfig, _world_records

pytest.importorskip("sklearn")


@pytest.mark.parametrize("repeats", [0, 1, 3])
def test_each_real_digit_appears_digit_repeats_times_always_for_understanding_too(repeats):
    cfg = DemoConfig(captions=3, qa_images=2, qa_per_image=2, videos=1, digit_repeats=repeats, image_size=24)
    records = _world_records(cfg)
    digits = [r for r in records if "label" in r]
    per_image = Counter(r["image"].tobytes() for r in digits)
    assert len(digits) == 1437 * repeats  # scikit-learn's digits, the seeded 80% training split
    assert all(n % repeats == 0 for n in per_image.values())  # each image `repeats` times (or a multiple: twins)
    assert all(r["understanding"] == 1.0 for r in digits)
    assert len(records) - len(digits) == 3 + 2 + 1  # captions, question images, videos
