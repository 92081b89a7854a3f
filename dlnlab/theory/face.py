"""Least squares on a signed face, solved incrementally: the inner step of Algorithm 1
(docs/theory.md §3) and of its non-negative variant (docs/nonnegative.md §3).

On the face {β : σ_i β_i ≥ 0 for i in the face, β_i = 0 elsewhere}, minimising L is a non-negative
least squares in γ = σ ⊙ β (σ_i ∈ {−1, +1} for the signed limit, σ_i = +1 for the non-negative
one). Consecutive faces differ by a coordinate or two, so the solver keeps the passive set P (the
support) and a QR factorisation of X_P between calls, updated with scipy's `qr_insert` /
`qr_delete` when a column enters or leaves (as LARS updates its factor), and Lawson–Hanson starts
from the previous solution.

Round-off: a coordinate whose least-squares value is zero in exact arithmetic (a tie, e.g. y an
exact sparse combination of the columns) comes out as ±1e-16 in floating point. The solver
counts a coordinate as zero when its share of the fit ‖x_i‖·|β_i| is at most `ZERO_SHARE`·‖y‖,
and then returns an exact 0 for it (it leaves the support).
"""

import warnings

import numpy as np
from scipy.linalg import qr_delete, qr_insert
from scipy.linalg.lapack import dtrtrs

# A least-squares solution is accurate to about eps·κ(X_P) relative to ‖y‖ (κ ≤ 6e3 on the faces
# of the random designs in tests/test_theory.py, so round-off ≤ 1.3e-12), while the smallest
# genuine share on those 3,482 saddles is 2.7e-6, 2.7e4 times ZERO_SHARE. Setting such a coordinate
# to 0 changes L by ‖x_i β_i‖²/(2n) ≤ ZERO_SHARE²·L(0) (the residual is orthogonal to x_i at the
# face's minimiser): 1e-20 relative, invisible.
ZERO_SHARE = 1e-10


class GeneralPositionWarning(UserWarning):
    """The data are not in general position (e.g. duplicated or collinear columns): the face
    minimiser need not be unique, and the path found is one of the possible ones."""


class FaceSolver:
    """Sign-constrained least squares min ‖X_P β_P − y‖² over faces of growing and shrinking
    support."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y
        self.P: list[int] = []
        self.Q = np.eye(X.shape[0])  # X_P = Q R, Q square orthogonal
        self.R = np.zeros((X.shape[0], 0))
        self.collinear: set[int] = set()
        self.residual = y.copy()  # y − X_P β_P at the last solution
        norms = np.sqrt(np.einsum("ij,ij->j", X, X))  # no temporary the size of X
        with np.errstate(divide="ignore"):  # a zero column never enters: its threshold is moot
            self.zero = ZERO_SHARE * np.linalg.norm(y) / norms  # |β_i| at or below this is 0

    def _add(self, j: int) -> bool:
        """Append column j to P; False (and j is set aside) if it lies in the span of X_P."""
        x = self.X[:, j]
        m = len(self.P)
        if np.linalg.norm(self.Q[:, m:].T @ x) <= 1e-8 * np.linalg.norm(x):
            self.collinear.add(j)
            warnings.warn(f"column {j} is (numerically) a combination of columns {sorted(self.P)}: "
                          "the data are not in general position, so the saddle path need not be "
                          "unique", GeneralPositionWarning, stacklevel=4)
            return False
        if m:
            self.Q, self.R = qr_insert(self.Q, self.R, x, m, which="col", check_finite=False)
        else:
            self.Q, self.R = np.linalg.qr(x[:, None], mode="complete")
        self.P.append(j)
        return True

    def _drop(self, drop: set[int]) -> None:
        for position in sorted((self.P.index(i) for i in drop), reverse=True):
            self.Q, self.R = qr_delete(self.Q, self.R, position, 1, which="col",
                                       check_finite=False)
            del self.P[position]
        self.collinear.clear()  # the span changed: set-aside columns may enter again

    def _least_squares(self) -> np.ndarray:
        m = len(self.P)
        # LAPACK directly: called once per saddle
        return dtrtrs(self.R[:m], self.Q[:, :m].T @ self.y)[0]

    def solve(self, beta: np.ndarray, sigma: np.ndarray, wtol: float) -> np.ndarray:
        """Lawson–Hanson from the last solution `beta` (support P): the face minimiser for signs
        `sigma`.

        A face coordinate enters while its dual weight σ_i (Xᵀ(y − Xβ))_i exceeds `wtol`.
        Coordinates whose least-squares value would cross zero, or reach it up to round-off (at
        most `self.zero`), leave (deactivations) and are returned as exact zeros.
        """
        beta = beta.copy()
        while True:
            outside = sigma != 0
            outside[self.P] = False
            outside[list(self.collinear)] = False
            Z = np.flatnonzero(outside)
            if not len(Z):
                return beta
            w = sigma[Z] * (self.X[:, Z].T @ self.residual)
            if w.max() <= wtol:
                return beta
            j = int(Z[np.argmax(w)])
            if not self._add(j):
                continue
            while True:
                z = self._least_squares()
                zero = self.zero[self.P]
                bad = sigma[self.P] * z <= zero
                if not bad.any():
                    beta[self.P] = z
                    rest = self.Q[:, len(self.P):]
                    self.residual = rest @ (rest.T @ self.y)
                    break
                if self.P[-1] == j and bad[-1] and beta[j] == 0:  # cannot enter: degenerate data
                    self.collinear.add(j)
                    self._drop({j})
                    break
                current = beta[self.P]
                # the furthest move towards z keeping the signs (≤ 1: a value that is zero up to
                # round-off may have the right sign, and z itself is then the end point)
                step = min(np.min(current[bad] / (current[bad] - z[bad])), 1.0)
                current = current + step * (z - current)
                leaving = {i for i, out in zip(self.P, sigma[self.P] * current <= zero) if out}
                beta[self.P] = current
                beta[list(leaving)] = 0.0
                self._drop(leaving)
