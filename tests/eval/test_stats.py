"""Evaluation statistics against hand-computed values."""

import math

import pytest

from emu3.eval.stats import mean_se, paired_difference, wilson_interval


def test_mean_and_standard_error_by_hand():
    mean, se = mean_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert se == pytest.approx(math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3 / 4))
    assert mean_se([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        mean_se([])


def test_paired_difference_uses_the_per_item_differences():
    d = paired_difference([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0])  # differences 1, 0, 0, 1
    assert d["difference"] == 0.5
    assert d["se"] == pytest.approx(math.sqrt(1 / 3 / 4))
    assert d["significant"] == 0.0  # 0.5 < 2 * 0.289
    assert paired_difference([1.0] * 8, [0.0] * 8)["significant"] == 1.0
    assert d["significantly_lower"] == 0.0 and paired_difference([1.0] * 8, [0.0] * 8)["significantly_lower"] == 0.0
    drop = paired_difference([0.0] * 8, [1.0] * 8)  # a large drop is significant too, in the other direction
    assert (drop["significant"], drop["significantly_lower"]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 0.0])


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-3) and hi == pytest.approx(0.9565, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_the_comparison_table_says_which_way_a_difference_goes_beyond_two_standard_errors():
    from emu3.eval.suite import comparisons, markdown

    def scored(items):
        return {"digits": {"items": items}}

    results = {"a": scored([1.0] * 8), "b": scored([0.0] * 8), "c": scored([0.0] * 8), "d": scored([1.0] * 8)}
    table = markdown({"results": results, "comparisons": comparisons(results)})
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[-1].strip(" |") for line in table.splitlines()}
    assert (rows["b - a"], rows["c - b"], rows["d - c"]) == ("lower", "no", "higher")


def test_video_extension_is_reported_with_what_it_is_measured_against():
    from emu3.eval.suite import markdown, references

    scored = {"items": [20.0, 30.0], "frozen_baseline_px": 12.05, "tokenizer_floor_px": 15.64, "tokenizer_found": 0.72}
    floor = "true clip through the tokenizer 15.6 px (object found in 72% of frames)"
    expected = ["repeating the last frame 12.1 px", floor]
    assert references(scored) == expected
    assert references({"items": [1.0]}) == []
    table = markdown({"results": {"gen": {"video_extension": scored, "digits": {"items": [1.0]}}}, "comparisons": []})
    notes = table.split("Measured against:\n")[1].splitlines()
    assert notes == ["- gen, video_extension: repeating the last frame 12.1 px; true clip through the tokenizer "
                     "15.6 px (object found in 72% of frames)"]  # fmt: skip
