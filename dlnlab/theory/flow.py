"""The exact gradient flow at finite α, integrated in the dual variable (PAPER.md §2).

ds/dt = −∇L(β(s)) in accelerated time, with β(s) the parametrisation's mirror map. A stiff solver
(Radau, analytic Jacobian −(XᵀX/n)·diag(dβ/ds)) integrates it at a cost that does not grow with
log(1/α); α enters only through log α, so α = 1e-1000 works.
"""

import functools
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from dlnlab.checks import ConfigError, check_xy


@dataclass(frozen=True)
class MirrorMap:
    """β(s) for a diagonal network at scale α (given as log α) with initialisation shape a.

    depth None: u ⊙ v with u0 = √2·α·a:     β = a²·α² sinh(2 log(1/α) s)
    depth 2:    w₊² − w₋² with w±(0) = α·a:  β = 2a²·α² sinh(2 log(1/α) s)
    depth L ≥ 3: w₊^L − w₋^L:                β = α^L [(a^(2−L) − s)^(−p) − (a^(2−L) + s)^(−p)], p = L/(L−2)
    """

    log_alpha: float
    depth: int | None = None
    shape: np.ndarray | float = 1.0

    def __post_init__(self):
        if not (np.isfinite(self.log_alpha) and self.log_alpha < 0):
            raise ConfigError(f"log_alpha={self.log_alpha!r} must be a finite negative number (α < 1)")
        if self.depth is not None and self.depth < 2:
            raise ConfigError(f"depth={self.depth!r} must be ≥ 2 (or None for u ⊙ v)")
        if self.depth is not None and self.depth >= 3 and (self.depth - 2) * self.log_alpha < np.log(1e-12):
            raise ConfigError(f"log_alpha={self.log_alpha!r} at depth={self.depth}: s would have to resolve "
                              "α^(L−2) < 1e-12 next to 1 in float64; depth ≥ 3 converges polynomially, use α ≥ 1e-4")

    @functools.cached_property
    def _sinh_scale(self) -> np.ndarray:
        return (2.0 if self.depth == 2 else 1.0) * np.asarray(self.shape, dtype=float) ** 2

    def beta(self, s: np.ndarray) -> np.ndarray:
        if self.depth is None or self.depth == 2:
            a, m = -2 * self.log_alpha, np.abs(s)  # α² sinh(a s) = ½ sign(s) (e^{a(|s|−1)} − e^{−a(|s|+1)}), overflow-safe
            return self._sinh_scale * 0.5 * np.sign(s) * (np.exp(a * (m - 1)) - np.exp(-a * (m + 1)))
        c, p = self._c(), self.depth / (self.depth - 2)
        return np.exp(self.depth * self.log_alpha) * ((c - s) ** -p - (c + s) ** -p)

    def dbeta_ds(self, s: np.ndarray) -> np.ndarray:
        if self.depth is None or self.depth == 2:
            a, m = -2 * self.log_alpha, np.abs(s)
            return self._sinh_scale * 0.5 * a * (np.exp(a * (m - 1)) + np.exp(-a * (m + 1)))
        c, p = self._c(), self.depth / (self.depth - 2)
        return np.exp(self.depth * self.log_alpha) * p * ((c - s) ** (-p - 1) + (c + s) ** (-p - 1))

    def _c(self) -> np.ndarray:
        return np.asarray(self.shape, dtype=float) ** (2 - self.depth)


@dataclass
class Flow:
    """The flow at accelerated times `times`: β, s and L at each; `crossings[j]` is the first time the
    loss falls below `levels[j]` (NaN if it never does within the horizon)."""

    times: np.ndarray
    betas: np.ndarray
    duals: np.ndarray
    losses: np.ndarray
    levels: np.ndarray
    crossings: np.ndarray
    mirror: MirrorMap
    dense: object = None  # s(t) on [0, times[-1]] when asked for with dense=True

    def at(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(β(t), s(t)) anywhere on the horizon, from the solver's dense output."""
        s = self.dense(np.asarray(t, dtype=float)).T
        return self.mirror.beta(s), s


def flow(X, y, log_alpha: float, times, depth: int | None = None, shape=1.0, levels=(),
         rtol: float = 1e-10, atol: float = 1e-12, dense: bool = False) -> Flow:
    """Integrate the finite-α gradient flow from s = 0 and report it at accelerated `times`.

    `levels`: loss levels whose first crossing times are located (e.g. `SaddlePath.jump_levels()`,
    which gives the flow's own jump times). The loss decreases along the flow, so each is crossed once.
    `dense=True` keeps the solver's interpolant: `Flow.at(t)` then evaluates anywhere on the horizon.
    """
    X, y = check_xy(X, y, source="flow")
    n, d = X.shape
    times = np.atleast_1d(np.asarray(times, dtype=float))
    if np.any(times < 0) or np.any(np.diff(times) < 0):
        raise ConfigError("times must be non-negative and increasing")
    mirror = MirrorMap(log_alpha, depth, shape)
    gram, xty = X.T @ X / n, X.T @ y / n

    def rhs(t, s):
        return xty - gram @ mirror.beta(s)

    def jac(t, s):
        return -gram * mirror.dbeta_ds(s)

    def loss(beta):  # the residual form: βᵀGβ/2 − bᵀβ + c cancels to < 0 once L ≪ L(0)
        r = beta @ X.T - y
        return np.einsum("...i,...i->...", r, r) / (2 * n)

    levels = np.asarray(levels, dtype=float)
    point_loss = _last_value(lambda s: float(loss(mirror.beta(s))))  # one loss for all the levels
    events = [_crossing(point_loss, level) for level in levels]
    with np.errstate(over="ignore", invalid="ignore"):  # trial steps may overshoot; the solver rejects them
        sol = solve_ivp(rhs, (0.0, times[-1]), np.zeros(d), method="Radau", t_eval=times, jac=jac, rtol=rtol,
                        atol=atol, events=events or None, dense_output=dense)
    if sol.status < 0:
        raise RuntimeError(f"the flow integration failed: {sol.message}")
    duals = sol.y.T
    betas = mirror.beta(duals)
    crossings = np.array([e[0] if len(e) else np.nan for e in sol.t_events]) if events else np.zeros(0)
    return Flow(times=times, betas=betas, duals=duals, losses=loss(betas), levels=levels,
                crossings=crossings, mirror=mirror, dense=sol.sol)


def _last_value(f):
    """f(s), computed once for a run of calls with the same s (the solver asks every event at each point)."""
    last = [None, None]

    def g(s):
        key = s.tobytes()
        if key != last[0]:
            last[:] = key, f(s)
        return last[1]
    return g


def _crossing(point_loss, level: float):
    def event(t, s):
        return point_loss(s) - level

    event.direction = -1
    return event
