"""Regression data (X, y): synthetic generators, files, the worked example, and the DataModule.

Every source returns float64 numpy arrays X (n × d, rows are samples) and y (n,), checked by
`check_xy` before any training starts.
"""

import math
import numbers
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from dlnlab.checks import ConfigError, check_xy, scale_bounds


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def synthetic(n: int = 20, d: int = 40, k: int = 3, noise: float = 0.0,
              features: str = "gaussian", rho: float = 0.5,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features (iid, or correlated with Σ_ij = rho^|i−j|), y = X β* + noise·ε.

    β* has k non-zero coordinates at random positions, each ±U[0.5, 1.5], so the support
    is visible above the noise. Every argument is checked before anything is drawn: n, d, k and
    seed are integers (seed ≥ 0, as numpy's generator needs); noise is at most a tenth of the
    upper end of `dlnlab.checks.scale_bounds(n, d)`, so that y stays where XᵀX/n and ‖y‖²/2n are
    finite (|ε| < 10 but for odds of 1.5e-23 a sample); k = 0 needs noise > 0 (else y = 0,
    nothing to learn) and at least 1e3 times the lower end (else y falls below float64's safe
    range). The result then passes `check_xy(..., nonzero=True)` like a file's data.
    """
    for name, v in (("n", n), ("d", d)):
        if not _is_int(v) or v < 1:
            raise ConfigError(f"{name}={v!r} must be a positive integer")
    if not _is_int(k) or not 0 <= k <= d:
        raise ConfigError(f"k={k!r} (non-zeros of the ground truth) must be an integer between 0 "
                          f"and d={d}")
    if not _is_real(noise) or not noise >= 0:
        raise ConfigError(f"noise={noise!r} must be a number ≥ 0 (the standard deviation of the "
                          "label noise)")
    lo, hi = scale_bounds(n, d)
    if noise > hi / 10:
        raise ConfigError(f"noise={noise!r} is too large: y would pass {hi:.3g}, the largest entry "
                          f"for which XᵀX/n and ‖y‖²/2n stay finite in float64 at n={n}, d={d}: "
                          f"use noise ≤ {hi / 10:.3g} (noise=1 is already the signal's size)")
    least = 10.0 ** math.ceil(math.log10(1e3 * lo))  # pure noise: max |noise·ε| ≥ lo, bar bad luck
    if k == 0 and noise == 0:
        raise ConfigError("k=0 with noise=0.0 makes y = 0, nothing to learn: use k ≥ 1 (the "
                          "non-zeros of the ground truth) or noise > 0 (e.g. noise=1.0)")
    if k == 0 and noise < least:
        raise ConfigError(f"k=0 with noise={noise!r} makes y = noise·ε too small for float64 "
                          f"(below {lo:.3g}, dlnlab.checks.scale_bounds): use noise ≥ {least:.0e} "
                          "or k ≥ 1")
    if features not in ("gaussian", "correlated"):
        raise ConfigError(f"features={features!r} is unknown: use 'gaussian' or 'correlated'")
    if not _is_real(rho) or not -1 < rho < 1:
        raise ConfigError(f"rho={rho!r} must be a number in (−1, 1) (the correlation of "
                          "neighbouring features)")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer ≥ 0 (e.g. seed=0)")
    try:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, d))
        if features == "correlated":
            cov = rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
            X = X @ np.linalg.cholesky(cov).T
        beta_star = np.zeros(d)
        support = rng.choice(d, size=k, replace=False)
        beta_star[support] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(0.5, 1.5, size=k)
        y = X @ beta_star + noise * rng.standard_normal(n)
    except MemoryError:
        raise ConfigError(f"n={n}, d={d}: X would take {8 * n * d / 2**30:.3g} GiB, more than "
                          "this machine can allocate: use a smaller n or d") from None
    return check_xy(X, y, source=f"noise={noise!r}", nonzero=True)


def worked_example() -> tuple[np.ndarray, np.ndarray]:
    """The public worked example of PAPER.md §3: jump times 2, 8, 552/49; coordinate 1
    deactivates."""
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


class _Ticks(IterableDataset):
    """An endless stream of placeholders: each one asks the task for its next block of steps."""

    def __iter__(self):
        while True:
            yield 0


class RegressionData(pl.LightningDataModule):
    """Holds X and y as tensors; the task moves them to its device once and samples batches there.

    Its dataloader carries no data, only ticks: one per `training_step`, which then runs many
    optimiser steps on the device-resident X and y (DESIGN.md, "Task").
    """

    def __init__(self, X, y, source: str = "data"):
        super().__init__()
        X, y = check_xy(X, y, source)
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Ticks(), batch_size=None)
