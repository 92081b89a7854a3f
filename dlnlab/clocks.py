"""The clocks T_α of the built-in networks (docs/theory.md §2): accelerated time t = τ / T_α.

Torch-free, so that a run's length can be checked before anything heavy is imported
(dlnlab.preflight);
the models' `time_scale()` are these.
"""

import math


def uv_clock(alpha: float) -> float:
    """β = u ⊙ v with u₀ = √2·α·a, v₀ = 0: T_α = log(1/α)."""
    return math.log(1 / alpha)


def symmetric_clock(alpha: float, depth: int) -> float:
    """β = w₊^L − w₋^L with w±(0) = α·a: log(1/α)/2 at depth 2, α^−(L−2) / (L(L−2)) at L ≥ 3
    (inf where that overflows)."""
    if depth == 2:
        return math.log(1 / alpha) / 2
    try:
        return alpha ** (-(depth - 2)) / (depth * (depth - 2))
    except OverflowError:
        return math.inf
