"""Small statistics for evaluation tables: means with standard errors, paired differences, Wilson intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); se is 0 for n < 2."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_se of no values")
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """mean(a - b) over paired items (same prompts and seeds), its standard error, whether a is higher by
    more than twice that standard error (`significant`, as 1.0 / 0.0; the targets' one-sided test) and
    whether it is lower by more (`significantly_lower`)."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs equal lengths, got {len(a)} and {len(b)}")
    diff, se = mean_se([x - y for x, y in zip(a, b, strict=True)])
    return {
        "difference": diff,
        "se": se,
        "significant": float(diff > 2 * se),
        "significantly_lower": float(diff < -2 * se),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
