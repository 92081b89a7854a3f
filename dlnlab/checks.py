"""Input checks shared by training and theory: one clear error naming the value and the fix."""

import sys
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
