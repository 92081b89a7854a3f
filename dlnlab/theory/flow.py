"""The exact gradient flow at finite α, integrated in the dual variable (docs/theory.md §4).

ds/dt = −∇L(β(s)) in accelerated time, with β(s) the parametrisation's mirror map (§2). α enters
only through log α, so α = 1e-1000 works, and the cost does not grow with log(1/α).

Numerics (docs/theory.md §8: everything in float64, whatever the inputs' dtype):
- the solver is LSODA with the analytic Jacobian −(XᵀX/n)·diag(dβ/ds). The right-hand side has a
  rounding floor (‖Xᵀy‖/n·ε, and dβ/ds·ulp(s) on saturated coordinates, where β ∝ e^{2 log(1/α) s});
  Radau's and BDF's Newton iterations demand corrections below a small fraction of the tolerance
  and stall at that floor, so on multi-scale data or long horizons they crawl (10⁵–10⁶ evaluations)
  or fail; LSODA's corrector test is tolerant of it.
- the error of every s_i is measured against the scale of s (|s_i| ≤ 1 up to O(1/log(1/α))), not
  against |s_i|: every coordinate starts at s_i = 0, where a relative tolerance is no tolerance.
- β(s) is capped where it would overflow (|β| ≈ 1e260, far beyond any flow from s = 0), so that
  trial steps past saturation give large finite values that the solver rejects.
- every loss is the residual form ‖Xβ − y‖²/(2n), never negative (the expanded quadratic
  βᵀGβ/2 − bᵀβ + c cancels catastrophically once L ≪ L(0)).
"""

import functools
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from dlnlab.checks import ConfigError, check_xy

_CAP = 600.0  # β(s) and dβ/ds stop growing at e^600 ≈ 1e260 (times the shape factor)


class FlowError(RuntimeError):
    """The exact flow could not be integrated (solver failure, non-finite values, work limit).

    The message says what failed and at which accelerated time t; a caller that only overlays
    the flow (the TensorBoard overlay) can catch it and go on without the flow."""


@dataclass(frozen=True)
class MirrorMap:
    """β(s) for a diagonal network at scale α (given as log α) with initialisation shape a
    (docs/theory.md §2). All fields are stored as float64, whatever was passed.

    depth None: u ⊙ v with u0 = √2·α·a:     β = a²·α² sinh(2 log(1/α) s)
    depth 2:    w₊² − w₋² with w±(0) = α·a:  β = 2a²·α² sinh(2 log(1/α) s)
    depth L ≥ 3: w₊^L − w₋^L:                β = α^L [(c − s)^(−p) − (c + s)^(−p)],
                                              c = a^(2−L), p = L/(L−2)
    nonnegative=True, β = w^L with w(0) = α·a, depth 2 or L ≥ 3 (docs/nonnegative.md §2):
      depth 2: β = a²·α^(2(1−s));  depth L ≥ 3: β = α^L (c − s)^(−p)
    """

    log_alpha: float
    depth: int | None = None
    shape: np.ndarray | float = 1.0
    nonnegative: bool = False

    def __post_init__(self):
        try:
            log_alpha = float(self.log_alpha)
            shape = np.asarray(self.shape, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"log_alpha={self.log_alpha!r}, shape: not numbers ({e})") from None
        if not (np.isfinite(log_alpha) and log_alpha < 0):
            raise ConfigError(f"log_alpha={self.log_alpha!r} must be finite and negative (α < 1)")
        if self.nonnegative and self.depth is None:
            raise ConfigError("nonnegative=True is the network β = w^L: give its depth (≥ 2); "
                              "u ⊙ v (depth None) is signed")
        if self.depth is not None and self.depth < 2:
            raise ConfigError(f"depth={self.depth!r} must be ≥ 2 (or None for u ⊙ v)")
        if not (np.all(np.isfinite(shape)) and np.all(shape > 0)):
            raise ConfigError("shape must be finite and positive (the initialisation shape a)")
        if self.depth is not None and self.depth >= 3 and \
                (self.depth - 2) * log_alpha < np.log(1e-12):
            raise ConfigError(
                f"log_alpha={self.log_alpha!r} at depth={self.depth}: s would have to resolve "
                "α^(L−2) < 1e-12 next to 1 in float64: use α ≥ "
                f"{1e-12 ** (1 / (self.depth - 2)) * 1.06:.2g} (the clock grows like α^−(L−2): a "
                "moderate α is already small at depth ≥ 3)")
        object.__setattr__(self, "log_alpha", log_alpha)
        object.__setattr__(self, "shape", shape if shape.ndim else float(shape))
        object.__setattr__(self, "depth", None if self.depth is None else int(self.depth))

    @functools.cached_property
    def _sinh_scale(self) -> np.ndarray:
        return (2.0 if self.depth == 2 else 1.0) * np.asarray(self.shape) ** 2

    @functools.cached_property
    def _power(self) -> tuple:
        """(c, p, log α^L, u0) for depth ≥ 3: u = c ∓ s is floored at u0, where α^L·p·u^(−p−1)
        reaches e^_CAP, so that β and dβ/ds stay finite beyond saturation."""
        L = self.depth
        p = L / (L - 2)
        log_scale = L * self.log_alpha
        return (np.asarray(self.shape) ** (2 - L), p, log_scale,
                np.exp((log_scale + np.log(p) - _CAP) / (p + 1)))

    def beta(self, s: np.ndarray) -> np.ndarray:
        """β(s), coordinate-wise (docs/theory.md §2)."""
        s = np.asarray(s, dtype=np.float64)
        if self.nonnegative:
            return self._one_sided(s, derivative=False)
        if self.depth is None or self.depth == 2:
            # α² sinh(a s) = ½ sign(s) (e^{a(|s|−1)} − e^{−a(|s|+1)}), a = 2 log(1/α): no overflow
            a, m = -2 * self.log_alpha, np.abs(s)
            grow = np.exp(np.minimum(a * (m - 1), _CAP))
            return self._sinh_scale * 0.5 * np.sign(s) * (grow - np.exp(-a * (m + 1)))
        c, p, log_scale, u0 = self._power
        return np.exp(log_scale) * (np.maximum(c - s, u0) ** -p - np.maximum(c + s, u0) ** -p)

    def dbeta_ds(self, s: np.ndarray) -> np.ndarray:
        """dβ/ds (positive), for the Jacobian; taken at the cap beyond it."""
        s = np.asarray(s, dtype=np.float64)
        if self.nonnegative:
            return self._one_sided(s, derivative=True)
        if self.depth is None or self.depth == 2:
            a, m = -2 * self.log_alpha, np.abs(s)
            grow = np.exp(np.minimum(a * (m - 1), _CAP))
            return self._sinh_scale * 0.5 * a * (grow + np.exp(-a * (m + 1)))
        c, p, log_scale, u0 = self._power
        return np.exp(log_scale) * p * (np.maximum(c - s, u0) ** (-p - 1)
                                        + np.maximum(c + s, u0) ** (-p - 1))

    def _one_sided(self, s: np.ndarray, derivative: bool) -> np.ndarray:
        """β(s), or dβ/ds, for β = w^L, w(0) = α·a (docs/nonnegative.md §2), overflow-safe and
        capped as the signed maps are (trial steps past blow-up give large finite values):
        depth 2:     β = a²·exp(−2 log(1/α)·(1 − s)),  dβ/ds = 2 log(1/α)·β  (α² never formed);
        depth L ≥ 3: β = α^L (c − s)^(−p),  dβ/ds = p·β / (c − s),  c = a^(2−L), p = L/(L−2)."""
        if self.depth == 2:
            rate = -2 * self.log_alpha
            beta = np.asarray(self.shape) ** 2 * np.exp(np.minimum(rate * (s - 1), _CAP))
            return rate * beta if derivative else beta
        c, p, log_scale, u0 = self._power
        gap = np.maximum(c - s, u0)
        beta = np.exp(log_scale) * gap ** -p
        return p * beta / gap if derivative else beta


@dataclass
class Flow:
    """The flow at accelerated times `times`: β, s and L at each; `crossings[j]` is the first time
    the loss falls to `levels[j]` (0 if L(0) is already at or below it, NaN if it never does
    within the horizon). `nfev`, `njev`, `nlu`: the solver's right-hand-side evaluations,
    Jacobians and LU decompositions (the cost of the flow)."""

    times: np.ndarray
    betas: np.ndarray
    duals: np.ndarray
    losses: np.ndarray
    levels: np.ndarray
    crossings: np.ndarray
    mirror: MirrorMap
    dense: object = None  # s(t) on [0, times[-1]] when asked for with dense=True
    nfev: int = 0
    njev: int = 0
    nlu: int = 0

    def at(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(β(t), s(t)) anywhere on the horizon, from the solver's dense output."""
        s = self.dense(np.asarray(t, dtype=np.float64)).T
        return self.mirror.beta(s), s


def flow(X, y, log_alpha: float, times, depth: int | None = None, shape=1.0, levels=(),
         rtol: float = 1e-10, atol: float = 1e-12, dense: bool = False,
         nonnegative: bool = False, max_nfev: int = 1_000_000) -> Flow:
    """Integrate the finite-α gradient flow from s = 0 (docs/theory.md §4) and report it at
    accelerated `times` (finite, ≥ 0, non-decreasing; t = 0 is the start, s = 0).

    All inputs (X, y, log_alpha, shape, times, levels) are converted to float64 first.
    `levels`: loss levels whose first crossing times are located (`SaddlePath.jump_levels()`
    gives the flow's own jump times, docs/theory.md §5). The loss decreases along the flow, so
    each is crossed once.
    `rtol`, `atol`: the error allowed in each s_i per step is about atol + rtol·(1 + |s_i|), i.e.
    relative to the range of s (rtol below 1e-13 counts as 1e-13); a saturated coordinate's β
    then has a relative error of about 2 log(1/α) times that (its β ∝ e^{2 log(1/α) s}). The
    flow is no more accurate than its float64 gradient: where the residual after a jump is
    ‖y‖·1e-7 (multi-scale data) the gradient carries a relative rounding error of ~1e-9, and s
    agrees with an independent solve to ~5e-9 whatever atol asks.
    `dense=True` keeps the solver's interpolant: `Flow.at(t)` then evaluates anywhere on the
    horizon. `max_nfev` bounds the work: beyond it, FlowError.
    `nonnegative=True`: the network β = w^L of that depth (MirrorMap, docs/nonnegative.md §2).
    Raises ConfigError for bad inputs, FlowError when the integration fails.
    """
    X, y = check_xy(X, y, source="flow")
    n, d = X.shape
    times = _check_times(times)
    mirror = MirrorMap(log_alpha, depth, shape, nonnegative)
    try:
        levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"flow: levels={levels!r} must be a list of numbers ({e})") from None
    if not (np.all(np.isfinite(levels)) and np.all(levels >= 0)):
        raise ConfigError(f"flow: levels={levels.tolist()!r} must be finite and ≥ 0 (loss values)")
    with np.errstate(over="ignore", invalid="ignore"):  # data too large: FlowError at t = 0
        gram, xty = X.T @ X / n, X.T @ y / n

    def loss(beta: np.ndarray) -> np.ndarray:
        r = beta @ X.T - y
        return np.einsum("...i,...i->...", r, r) / (2 * n)

    count = [0, 0.0]  # right-hand-side evaluations, the last t asked for

    def rhs(t, s):
        count[0] += 1
        count[1] = t
        if count[0] > max_nfev:
            raise FlowError(f"the flow needed more than max_nfev={max_nfev} right-hand-side "
                            f"evaluations and stopped at t = {t:.6g} of {times[-1]:.6g}")
        with np.errstate(over="ignore", invalid="ignore"):
            f = xty - gram @ mirror.beta(s)
        if not np.all(np.isfinite(f)):
            raise FlowError(f"the flow's gradient is not finite at t = {t:.6g} (data too large "
                            "for float64?)")
        return f

    def jac(t, s):
        return -gram * mirror.dbeta_ds(s)

    loss0 = float(loss(np.zeros(d)))
    at_start = levels >= loss0
    unique, where = np.unique(times, return_inverse=True)
    if unique[-1] == 0:  # nothing to integrate: the state at t = 0 is s = 0
        duals = np.zeros((len(unique), d))
        crossings = np.where(at_start, 0.0, np.nan)
        sol = _Rest(d) if dense else None
        stats = (0, 0, 0)
    else:
        point_loss = _last_value(lambda s: float(loss(mirror.beta(s))))  # one per solver point
        events = [_crossing(point_loss, level) for level in levels[~at_start]]
        try:
            with np.errstate(over="ignore", under="ignore"):
                result = solve_ivp(rhs, (0.0, unique[-1]), np.zeros(d), method="LSODA",
                                   t_eval=unique, jac=jac, rtol=max(rtol, 1e-13),
                                   atol=atol + rtol, events=events or None, dense_output=dense)
        except FlowError:
            raise
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            raise FlowError(f"the flow integration failed near t = {count[1]:.6g}: {e}") from e
        if result.status < 0 or len(result.t) != len(unique) or not np.all(np.isfinite(result.y)):
            raise FlowError(f"the flow integration failed near t = {count[1]:.6g} of "
                            f"{unique[-1]:.6g}: {result.message}")
        duals = result.y.T
        crossings = np.zeros(len(levels))
        crossings[~at_start] = [e[0] if len(e) else np.nan for e in result.t_events or []]
        crossings[at_start] = 0.0
        sol = result.sol
        stats = (result.nfev, result.njev, result.nlu)
    duals = duals[where]
    betas = mirror.beta(duals)
    return Flow(times=times, betas=betas, duals=duals, losses=loss(betas), levels=levels,
                crossings=crossings, mirror=mirror, dense=sol, nfev=stats[0], njev=stats[1],
                nlu=stats[2])


def _check_times(times) -> np.ndarray:
    """times as a non-empty float64 vector, finite, ≥ 0 and non-decreasing, or one ConfigError."""
    try:
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"flow: times={times!r} must be a list of numbers ({e})") from None
    fix = "give accelerated times t ≥ 0 in increasing order, e.g. times=[1.0, 2.0, 5.0]"
    if t.ndim != 1 or t.size == 0:
        raise ConfigError(f"flow: times={times!r} is empty or not a flat list: {fix}")
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"flow: times[{i}] = {float(t[i])!r} is not a finite number ≥ 0: {fix}")
    down = np.flatnonzero(np.diff(t) < 0)
    if len(down):
        i = int(down[0])
        raise ConfigError(f"flow: times decrease at index {i + 1} ({float(t[i])!r} then "
                          f"{float(t[i + 1])!r}): {fix}")
    return t


class _Rest:
    """The dense output of a flow that was not integrated (horizon 0): s = 0."""

    def __init__(self, d: int):
        self.d = d

    def __call__(self, t):
        t = np.asarray(t, dtype=np.float64)
        if np.any(t != 0):
            raise ValueError("this flow was only evaluated at t = 0")
        return np.zeros((self.d,) + t.shape)


def _last_value(f):
    """f(s), computed once for a run of calls with the same s (the solver asks every event at
    each point)."""
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
