"""Where the paths end (docs/theory.md §3, docs/nonnegative.md §4): the minimiser of L with the
smallest ℓ1 norm, OLS, and the non-negative minimiser of L with the smallest sum."""

import numpy as np
from scipy.optimize import linprog, nnls

from dlnlab.checks import check_xy


def ols(X, y) -> np.ndarray:
    """The least-squares solution of minimum ℓ2 norm (unique when X has full column rank)."""
    X, y = check_xy(X, y, source="ols")
    return np.linalg.lstsq(X, y, rcond=None)[0]


def min_l1_minimizer(X, y) -> np.ndarray:
    """argmin ‖β‖₁ over the minimisers of L: the minimum-ℓ1 interpolator when Xβ = y is solvable,
    OLS when X has full column rank.

    A linear program (scipy's HiGHS) over β = β⁺ − β⁻ with Xβ = ŷ, ŷ the projection of y on the
    column space of X; its vertex is then polished by least squares on the support it found, so
    the answer is exact to rounding rather than to the LP's tolerance.
    """
    X, y = check_xy(X, y, source="min_l1_minimizer")
    n, d = X.shape
    if np.linalg.matrix_rank(X) == d:
        return ols(X, y)
    y_hat = X @ ols(X, y)
    result = linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y_hat, bounds=(0, None),
                     method="highs")
    if result.status != 0:
        raise RuntimeError(f"the ℓ1 linear program failed: {result.message}")
    beta = result.x[:d] - result.x[d:]
    support = np.flatnonzero(np.abs(beta) > 1e-9 * max(np.abs(beta).max(), 1e-300))
    polished = np.zeros(d)
    polished[support] = np.linalg.lstsq(X[:, support], y_hat, rcond=None)[0]
    return polished


def min_sum_nonnegative_minimizer(X, y) -> np.ndarray:
    """argmin Σβ over the minimisers of L on β ≥ 0: where the non-negative limit ends
    (docs/nonnegative.md §4).

    The fitted values Xβ are the same for every non-negative minimiser (L is strictly convex in
    Xβ), so they are those of any one of them, ŷ₊ = X·NNLS(X, y) (scipy's `nnls`); then a linear
    program (scipy's HiGHS): min Σβ s.t. Xβ = ŷ₊, β ≥ 0. When y is reachable (y = Xβ for some
    β ≥ 0) ŷ₊ = y and this is the minimum-sum non-negative interpolator. Its vertex is polished
    by NNLS on the support it found (unique there: a vertex's columns are independent), so the
    answer is exact to rounding rather than to the LP's tolerance.
    """
    X, y = check_xy(X, y, source="min_sum_nonnegative_minimizer")
    n, d = X.shape
    y_plus = X @ nnls(X, y)[0]
    result = linprog(np.ones(d), A_eq=X, b_eq=y_plus, bounds=(0, None), method="highs")
    if result.status != 0:
        raise RuntimeError(f"the non-negative linear program failed: {result.message}")
    support = np.flatnonzero(result.x > 1e-9 * max(result.x.max(), 1e-300))
    polished = np.zeros(d)
    if len(support):
        polished[support] = nnls(X[:, support], y)[0]
    return polished


def lasso_objective(X, y, beta, lam: float) -> float:
    """L(β) + λ‖β‖₁: the Lasso objective in this project's normalisation."""
    r = X @ beta - y
    return r @ r / (2 * len(y)) + lam * np.abs(beta).sum()
