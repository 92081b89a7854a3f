"""Regression data (X, y): synthetic generators, files, and the worked example (numpy only).

Every source returns float64 numpy arrays X (n × d, rows are samples) and y (n,), checked by
`check_xy` before any training starts.
"""

import zipfile
from pathlib import Path

import numpy as np

from dlnlab.checks import ConfigError, check_xy


def synthetic(n: int = 20, d: int = 40, k: int = 3, noise: float = 0.0, features: str = "gaussian",
              rho: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features (iid, or correlated with Σ_ij = rho^|i−j|), y = X β* + noise·ε.

    β* has k non-zero coordinates at random positions, each ±U[0.5, 1.5], so the support
    is visible above the noise.
    """
    for name, v in (("n", n), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}={v!r} must be a positive integer")
    if not 0 <= k <= d:
        raise ConfigError(f"k={k!r} (non-zeros of the ground truth) must be between 0 and d={d}")
    if not noise >= 0:
        raise ConfigError(f"noise={noise!r} must be ≥ 0 (the standard deviation of the label noise)")
    if features not in ("gaussian", "correlated"):
        raise ConfigError(f"features={features!r} is unknown: use 'gaussian' or 'correlated'")
    if not -1 < rho < 1:
        raise ConfigError(f"rho={rho!r} must lie in (−1, 1) (the correlation of neighbouring features)")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if features == "correlated":
        cov = rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
        X = X @ np.linalg.cholesky(cov).T
    beta_star = np.zeros(d)
    support = rng.choice(d, size=k, replace=False)
    beta_star[support] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(0.5, 1.5, size=k)
    y = X @ beta_star + noise * rng.standard_normal(n)
    return X, y


def worked_example() -> tuple[np.ndarray, np.ndarray]:
    """The public worked example of PAPER.md §3: jump times 2, 8, 552/49; coordinate 1 deactivates."""
    X = np.array([[1.0, 0.5, 0.7, 0.0], [0.5, 1.0, 0.1, 0.7]])
    y = np.array([1.0, 0.0])
    return X, y


def load(path: str) -> tuple[np.ndarray, np.ndarray]:
    """X and y from a .npz file (arrays `X` and `y`) or a .csv file (last column y, optional header)."""
    p = Path(path).expanduser()
    where = f"path={str(path)!r}"
    if not p.is_file():
        raise ConfigError(f"{where}: no such file (give data.path=/path/to/data.npz or .csv)")
    if p.suffix == ".npz":
        if not zipfile.is_zipfile(p):
            raise ConfigError(f"{where} is not a .npz archive: save one with np.savez(path, X=X, y=y)")
        with np.load(p, allow_pickle=False) as f:
            missing = {"X", "y"} - set(f.files)
            if missing:
                raise ConfigError(f"{where}: the .npz holds arrays {sorted(f.files)}, not {sorted(missing)}: "
                                  "save it with np.savez(path, X=X, y=y)")
            X, y = f["X"], f["y"]
    elif p.suffix == ".csv":
        try:
            table = np.genfromtxt(p, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise ConfigError(f"{where}: not a rectangular CSV ({e})") from None
        if table.size and np.isnan(table[0]).all():  # a header line
            table = table[1:]
        if table.ndim != 2 or table.shape[1] < 2 or table.shape[0] == 0:
            raise ConfigError(f"{where}: a CSV needs at least one row and two columns (features, then y)")
        X, y = table[:, :-1], table[:, -1]
    else:
        raise ConfigError(f"{where}: unknown file type {p.suffix!r}: use .npz (arrays X, y) or .csv (last column y)")
    return check_xy(X, y, source=where)
