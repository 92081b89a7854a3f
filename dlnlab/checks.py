"""Input checks shared by training and theory: one clear error naming the value and the fix."""

import math
import sys
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np


class ConfigError(ValueError):
    """Bad configuration or data, detected before any training work is done."""


@contextmanager
def exit_on_config_error(program: str):
    """For console scripts: a ConfigError becomes one line on stderr and exit status 2, no traceback."""
    try:
        yield
    except ConfigError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(2)


def check_xy(X, y, source: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """X as an (n, d) and y as an (n,) finite float64 array, or one ConfigError naming the problem."""
    try:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: X and y must be numeric arrays ({e})") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if X.ndim != 2 or y.ndim != 1:
        raise ConfigError(f"{source}: X must be 2-D (n × d) and y 1-D (n,), got shapes {X.shape} and {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ConfigError(f"{source}: X has {X.shape[0]} rows but y has {y.shape[0]} entries: they must match")
    if X.size == 0:
        raise ConfigError(f"{source}: the data is empty (X has shape {X.shape})")
    for name, a in (("X", X), ("y", y)):
        bad = ~np.isfinite(a)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ConfigError(f"{source}: {name} has {int(bad.sum())} NaN, inf or non-numeric value(s), the first at "
                              f"index {where}: remove or impute them")
    return X, y


# The checks of model parameters by name, shared by the built-in models and, before a run starts,
# by every model that takes such a parameter (dlnlab.plan): torch-free, so they answer at once.

SMALLEST_ALPHA = {"float64": 1e-150, "float32": 1e-18}  # docs/theory.md §8


def check_alpha(alpha) -> float:
    """alpha as a float in (0, 1): the theory is about α → 0, and log(1/α) must be > 0."""
    if (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha)
            or not 0 < alpha < 1):
        raise ConfigError(f"alpha={alpha!r} must be a number in (0, 1), the initialisation scale "
                          "(e.g. alpha=1e-10)")
    return float(alpha)


def check_depth(depth) -> int:
    """depth as an integer ≥ 2."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ConfigError(f"depth={depth!r} must be an integer ≥ 2 (2 is the shallow network, "
                          "e.g. depth=3)")
    return depth


def check_dtype(dtype, alpha: float | None = None) -> str:
    """dtype as a name ("float64" or "float32"); with `alpha`, also that this dtype can hold the run
    at that α (at saturation u − v ∝ α², which must stay a normal number: docs/theory.md §8)."""
    if dtype not in SMALLEST_ALPHA:
        raise ConfigError(f"dtype={dtype!r} is unknown: use 'float64' (default) or 'float32'")
    smallest = SMALLEST_ALPHA[dtype]
    if alpha is not None and alpha < smallest:
        fix = "use dtype=float64" if dtype == "float32" else \
            "use dlnlab.theory.flow, which takes log α,"
        raise ConfigError(f"alpha={alpha!r} is too small for {dtype}, whose smallest safe α is "
                          f"{smallest:g} (u − v ∝ α² underflows): {fix} or alpha ≥ {smallest:g}")
    return dtype


def init_shape(shape, d: int, seed=0) -> np.ndarray:
    """The initialisation shape a (α_i = α·a_i, docs/theory.md §2), as a positive vector:
    "uniform" (all ones), "random" (uniform on [0.5, 1.5], from `seed`), or d positive numbers."""
    if isinstance(shape, str):
        if shape == "uniform":
            return np.ones(d)
        if shape == "random":
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"shape_seed={seed!r} must be a non-negative integer")
            return np.random.default_rng(seed).uniform(0.5, 1.5, size=d)
        raise ConfigError(f"shape={shape!r} is unknown: use 'uniform', 'random' or a list of {d} "
                          "positive numbers")
    if not isinstance(shape, Sequence):
        raise ConfigError(f"shape={shape!r} is neither a name nor a list: use 'uniform', 'random' "
                          "or a list")
    a = np.asarray(list(shape), dtype=float)
    if a.shape != (d,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ConfigError(f"shape={list(shape)!r} must be {d} finite positive numbers, one per "
                          f"coordinate (d={d})")
    return a
