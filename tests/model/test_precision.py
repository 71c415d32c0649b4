"""bf16 only where it is fast: "auto" picks it from the hardware, and the recipes' autocast follows."""

import pytest
import torch

from emu3.model.precision import bf16_is_fast, compute_dtype
from emu3.recipes.common import autocast


def test_named_dtypes_and_auto():
    assert compute_dtype("fp32") is torch.float32 and compute_dtype("bf16") is torch.bfloat16
    assert compute_dtype("auto", "cpu") is (torch.bfloat16 if bf16_is_fast("cpu") else torch.float32)
    with pytest.raises(ValueError, match="fp16"):
        compute_dtype("fp16")


def test_recipe_autocast_uses_bf16_only_where_it_is_fast():
    a, b = torch.randn(4, 8), torch.randn(8, 4)
    with autocast(True, "cpu"):
        on = (a @ b).dtype
    with autocast(False, "cpu"):
        off = (a @ b).dtype
    assert off is torch.float32
    assert on is (torch.bfloat16 if bf16_is_fast("cpu") else torch.float32)
