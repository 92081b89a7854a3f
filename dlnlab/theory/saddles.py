"""Algorithm 1 (docs/theory.md §3): the α → 0 limit of the accelerated flow, jumping from saddle
to saddle; and its one-sided variant for non-negative networks β = w^L (docs/nonnegative.md §3)."""

import warnings
from dataclasses import dataclass

import numpy as np

from dlnlab.checks import ConfigError, check_xy
from dlnlab.theory.face import FaceSolver, GeneralPositionWarning

KINDS = ("signed", "nonnegative")
# L(β_k) is computed from a residual accurate to about eps·κ·‖y‖, so an interpolating saddle's
# loss comes out as ~eps²·L(0) ≈ 1e-32·L(0) instead of 0. A loss at or below LOSS_ROUNDING·L(0)
# (room for κ up to ~1e4 and more) is that rounding and is reported as exactly 0; a genuine loss
# that small would need y within 1e-12 (relative) of the fitted values, below the data's own
# rounding once X and y have been through any arithmetic.
LOSS_ROUNDING = 1e-24


@dataclass
class SaddlePath:
    """The saddles β_0 = 0, β_1, ..., β_p and the jump times 0 = t_0 < t_1 < ... < t_p.

    `duals[k]` is s at t_k (saturated coordinates exactly ±1, or exactly 1 for kind
    "nonnegative"), `velocities[k]` is ds/dt on (t_k, t_{k+1}) (−∇L(β_k), and 0 on saturated
    coordinates), `faces[k]` the signs σ of the face on which β_k minimises L, `entering[k]` /
    `leaving[k]` the coordinates that join / leave the support at jump k. `converged` is False
    when the iteration cap stopped the recursion. `kind` is "signed" (β = u ⊙ v, w₊^L − w₋^L:
    docs/theory.md §3) or "nonnegative" (β = w^L: docs/nonnegative.md §3, where s ≤ 1 only and
    the last velocity may stay non-zero: s then decreases for ever while β stays put).
    """

    times: np.ndarray
    betas: np.ndarray
    duals: np.ndarray
    velocities: np.ndarray
    losses: np.ndarray
    faces: np.ndarray
    entering: list[list[int]]
    leaving: list[list[int]]
    converged: bool = True
    kind: str = "signed"

    def __len__(self) -> int:
        return len(self.times)

    def index(self, t) -> np.ndarray:
        """k with t_k ≤ t < t_{k+1} for each t (β° is right-continuous)."""
        return np.searchsorted(self.times, np.asarray(t, dtype=float), side="right") - 1

    def beta(self, t, coords=slice(None)) -> np.ndarray:
        """The limit β°(t) (only the coordinates `coords`: a long time grid times a large d adds
        up)."""
        return self.betas[:, coords][self.index(t)]

    def dual(self, t, coords=slice(None)) -> np.ndarray:
        """s(t) = s_k + (t − t_k)·velocity_k: continuous, piecewise linear, inside [−1, 1]
        ((−∞, 1] for kind "nonnegative")."""
        k = self.index(t)
        return self.duals[:, coords][k] + \
            (np.asarray(t, dtype=float) - self.times[k])[..., None] * self.velocities[:, coords][k]

    def loss(self, t) -> np.ndarray:
        """L(β°(t))."""
        return self.losses[self.index(t)]

    def time_average(self, t: float) -> np.ndarray:
        """(1/t) ∫_0^t β°(r) dr: the Lasso solution at λ = 1/t while no coordinate has
        deactivated (the non-negative Lasso for kind "nonnegative")."""
        ends = np.minimum(np.append(self.times[1:], np.inf), t)
        weights = np.clip(ends - self.times, 0, None)
        return weights @ self.betas / t

    def supports(self) -> list[list[int]]:
        """The support of each saddle (round-off residues are exact zeros: dlnlab.theory.face)."""
        return [np.flatnonzero(b).tolist() for b in self.betas]

    def table(self) -> list[dict]:
        """One row per saddle: k, t, loss, support, entering, leaving, beta, dual (JSON-ready)."""
        rows = zip(self.times, self.losses, self.supports(), self.entering, self.leaving,
                   self.betas, self.duals)
        return [{"k": k, "t": float(t), "loss": float(loss), "support": support,
                 "entering": entering, "leaving": leaving, "beta": beta.tolist(),
                 "dual": dual.tolist()}
                for k, (t, loss, support, entering, leaving, beta, dual) in enumerate(rows)]

    def jump_levels(self, fraction: float = 0.5) -> np.ndarray:
        """The loss level ℓ_k that marks jump k (k = 1, ..., p), for any loss trace:
        ℓ_k = L(β_k) + `fraction`·(L(β_{k−1}) − L(β_k)), by default the middle of the drop.

        A run's (or a flow's) time of jump k is the first time its loss falls to ℓ_k; the same
        levels serve gradient descent, of which only the loss is known, and the exact flow
        (docs/jump-times.md: definition, why, and the evidence). The middle of the drop is inside
        the jump for every kind (an entry, a deactivation, several coordinates at once, a jump to
        a zero loss), never in the slow approach to the next saddle, and the levels decrease
        strictly (ℓ_k > L(β_k) > ℓ_{k+1}), so the crossings come in order. The marked time
        approaches the limit's t_k like C / log(1/α) (docs/theory.md §5).
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction={fraction!r} must lie in (0, 1): the share of the drop "
                             "from L(β_(k−1)) to L(β_k) that marks the jump (0.5: its middle)")
        before, after = self.losses[:-1], self.losses[1:]
        return after + fraction * (before - after)


def saddle_path(X, y, tol: float = 1e-9, max_iter: int | None = None,
                kind: str = "signed") -> SaddlePath:
    """Run Algorithm 1 exactly on data X (n × d), y (n,).

    kind "signed" (default): the limit of β = u ⊙ v and w₊^L − w₋^L (docs/theory.md §3): s moves
    in [−1, 1]^d and a coordinate joins the face, with sign ±1, when |s_i| reaches 1.
    kind "nonnegative": the limit of β = w^L (docs/nonnegative.md §3): s_i ≤ 1 only, a coordinate
    joins the face when s_i reaches 1 and stays ≥ 0, and a coordinate whose correlation stays
    negative never moves; the last saddle is the minimum-Σβ non-negative minimiser of L.

    Saturated coordinates are tracked as signs σ, never by comparing floats with 1. A gradient
    coordinate below `tol`·‖∇L(0)‖∞ counts as zero (it would jump only after 1/tol times t_1).
    The recursion stops when no coordinate's dual can reach the face any more (∇L(β_k) = 0 for
    "signed"; ∇L(β_k) ≥ 0 off the face for "nonnegative"); `max_iter` (default 20·(n + d) + 100)
    guards termination. A loss that is the rounding of 0 (see LOSS_ROUNDING) is reported as 0.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r} is unknown: use 'signed' (β = u ⊙ v or w₊^L − w₋^L) or "
                          "'nonnegative' (β = w^L)")
    X, y = check_xy(X, y, source="saddle_path")
    n, d = X.shape
    max_iter = 20 * (n + d) + 100 if max_iter is None else max_iter
    gtol = tol * np.abs(X.T @ y).max() / n
    solver = FaceSolver(X, y)
    beta, s = np.zeros(d), np.zeros(d)
    sigma = np.zeros(d, dtype=np.int8)
    t = 0.0
    r = -y
    g = X.T @ r / n
    velocity = -g  # ds/dt on the current interval: −∇L(β_k), 0 on saturated coordinates
    path = _Recorder(loss_floor=LOSS_ROUNDING * (y @ y) / (2 * n))
    path.add(t, beta, s, velocity, r @ r / (2 * n), sigma)
    converged = False
    for _ in range(max_iter):
        # the coordinates whose dual moves towards a face: |s_i| → 1, or s_i → 1 only
        moving = np.abs(velocity) > gtol if kind == "signed" else velocity > gtol
        if not moving.any():
            converged = True
            break
        target = np.sign(velocity)  # the face each moving s_i heads for (+1 for "nonnegative")
        delta = np.full(d, np.inf)
        delta[moving] = (target[moving] - s[moving]) / velocity[moving]  # time for s_i to get there
        step = delta.min()
        hits = np.flatnonzero(delta <= step * (1 + 1e-12))
        if len(hits) > 1:
            warnings.warn(f"coordinates {hits.tolist()} reach the face together at "
                          f"t = {t + step:.6g}: the data are not in general position (duplicated "
                          "or collinear columns?)", GeneralPositionWarning, stacklevel=2)
        s += step * velocity
        t += step
        s[hits] = target[hits]  # saturated: exactly ±1, tracked by sigma from here on
        sigma[hits] = target[hits]
        beta = solver.solve(beta, sigma, wtol=n * gtol)
        r = -solver.residual
        g = X.T @ r / n
        # pushed back inside: s leaves the face (into (−1, 1), or below 1)
        released = (sigma != 0) & (beta == 0) & (sigma * g > gtol)
        face = sigma.copy()
        sigma[released] = 0
        velocity = np.where(sigma != 0, 0.0, -g)
        path.add(t, beta, s, velocity, r @ r / (2 * n), sigma, face)
    else:
        warnings.warn(f"saddle_path stopped after max_iter={max_iter} jumps without reaching a "
                      "minimiser: the path is incomplete (raise max_iter, or check the data)",
                      RuntimeWarning, stacklevel=2)
    return path.result(converged, kind)


class _Recorder:
    """Collects the saddles as Algorithm 1 produces them."""

    def __init__(self, loss_floor: float):
        self.loss_floor = loss_floor  # a loss at or below it is the rounding of 0
        self.rows: dict[str, list] = {k: [] for k in ("times", "betas", "duals", "velocities",
                                                      "losses", "faces")}

    def add(self, t, beta, s, velocity, loss, sigma, face=None):
        loss = 0.0 if loss <= self.loss_floor else loss
        for key, value in zip(self.rows, (t, beta.copy(), s.copy(), velocity, loss,
                                          (sigma if face is None else face).copy())):
            self.rows[key].append(value)

    def result(self, converged: bool, kind: str) -> SaddlePath:
        arrays = {k: np.array(v) for k, v in self.rows.items()}
        support = arrays["betas"] != 0
        pairs = list(zip(support[:-1], support[1:]))
        entering = [[]] + [np.flatnonzero(b & ~a).tolist() for a, b in pairs]
        leaving = [[]] + [np.flatnonzero(a & ~b).tolist() for a, b in pairs]
        return SaddlePath(**arrays, entering=entering, leaving=leaving, converged=converged,
                          kind=kind)
