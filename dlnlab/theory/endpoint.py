"""Where a run ends: the minimiser of the hyperbolic entropy over the minimisers of L.

Gradient flow on u ⊙ v from u₀ = √2·α·a, v₀ = 0 integrates to β = α² ⊙ sinh(2θ), θ = −∫∇L dτ,
with α² the vector α²a² (docs/theory.md §1, §2). As 2θ stays in range(Xᵀ), the flow ends at the
β = α² ⊙ sinh(Xᵀλ) that minimises L: the minimiser of the hyperbolic entropy φ_α over the
minimisers of L (docs/theory.md §4). Large-step GD and SGD end, to third order in the steps, at
the same point for a smaller, per-coordinate α_eff that the parameters themselves give
(`effective_alpha`; docs/large-steps.md).

    beta = hyperbolic_minimizer(X, y, alpha=0.01)                  # the flow's end point
    beta = hyperbolic_minimizer(X, y, effective_alpha(p, q))      # a large-step run's end point
"""

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, eigh

from dlnlab.checks import ConfigError, check_xy

_EPS = np.finfo(float).eps


def effective_alpha(first, second) -> np.ndarray:
    """α_eff = sqrt(2·first·second) for a network β = first² − second² with first, second > 0.

    Such a β equals α_eff² ⊙ sinh(log(first/second)) exactly (docs/large-steps.md §2): the
    scale α_eff of the u ⊙ v normalisation that `hyperbolic_minimizer` takes, read off the
    parameters with no gradient history. For u ⊙ v pass (p, q) = ((u + v)/2, (u − v)/2); for
    w₊² − w₋² pass (w₊, w₋); a dlnlab model names the pair in `power_form()[:2]` (depth 2 only).
    At initialisation it is √2·α·a for w± and α·a for u ⊙ v; each GD or SGD step with step γ
    and gradient g multiplies α_eff² by 1 − γ²g² (u ⊙ v) or 1 − 4γ²g² (w±).

    Raises ConfigError when a coordinate is not positive in both: a step with |γ g_i| ≥ 1 (or
    |2γ g_i| ≥ 1 for w±) changed a sign, and no α_eff describes that coordinate any more.
    """
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ConfigError(f"effective_alpha: the two factors have shapes {a.shape} and {b.shape}: "
                          "pass (p, q) of u ⊙ v or (w₊, w₋) of w₊² − w₋², one entry per coordinate")
    bad = ~(np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0))
    if bad.any():
        raise ConfigError(f"effective_alpha: {int(bad.sum())} coordinate(s), the first "
                          f"{int(np.flatnonzero(bad.ravel())[0])}, are not finite and positive in "
                          "both factors: a step with |γ g_i| ≥ 1 flipped a sign "
                          "(docs/large-steps.md §4), so no effective α describes them")
    return np.sqrt(2.0) * np.sqrt(a) * np.sqrt(b)  # not sqrt(2ab): 2ab underflows at α ≲ 1e-154


def hyperbolic_minimizer(X, y, alpha=None, *, log_alpha=None, offset=None, rtol: float = 1e-10,
                         max_newton: int = 500) -> np.ndarray:
    """argmin φ_α(β) − offsetᵀβ over the minimisers of L(β) = ‖Xβ − y‖²/(2n).

    φ_α(β) = Σ_i β_i arcsinh(β_i/α_i²) − sqrt(β_i² + α_i⁴) + α_i², so that ∇φ_α(β) = z exactly when
    β = α² ⊙ sinh(z): the u ⊙ v normalisation of docs/theory.md §1 (twice that page's φ_α,
    the same minimiser). The minimisers of L are {Xβ = ŷ}, ŷ the projection of y on range(X), so
    y need not be interpolable; X may be rank-deficient; with full column rank the answer is OLS
    for every α. The answer is β = α² ⊙ sinh(Xᵀλ + offset) with Xβ = ŷ.

    alpha: a positive number or one per coordinate (α_i = α·a_i for an initialisation shape a; α_eff
        from `effective_alpha` for a large-step run, docs/large-steps.md §3). Or give log_alpha
        instead, for α below float range (1e-400): only log α is ever used, so any scale works,
        and as α → 0 the answer tends to `min_l1_minimizer` (docs/theory.md §4).
    offset: the dual at the start, log(p₀/q₀) for u ⊙ v; None (zero) for the balanced start of
        every dlnlab model. The flow from (p₀, q₀) ends here with alpha = effective_alpha(p₀, q₀).
    rtol: the solve stops when ‖Vᵀβ − b‖ ≤ rtol·‖β‖ (V, b below): Xβ = ŷ to rtol relative,
        measured in the row space of X; rounding is ≈ 2 log(1/α)·ε (3e-13 at α = 1e-300).

    Method: damped Newton on the dual c ↦ Σ α_i² cosh((Vc)_i + offset_i) − bᵀc, where V (d × r)
    is an orthonormal basis of range(Xᵀ) and Vᵀβ = b is the constraint Xβ = ŷ. The dual is
    convex, with gradient Vᵀβ − b and Hessian Vᵀ diag(α² cosh) V (positive definite); an Armijo
    line search on its differences, computed termwise without cancellation, makes Newton
    globally convergent, and quadratic at the end. Everything is in log α: α² underflows below
    α ≈ 1e-154, and α² cosh overflows at trial points (scipy's trust-exact on the plain dual
    agrees with this solver to 1e-10 at α = 1e-30 but stops on inf at α = 1e-100). From c = 0,
    Newton's first step is ~‖b‖/α², which no line search recovers from at α = 1e-30; so the
    small α_i are first raised to where the problem is nearly quadratic, then brought down
    geometrically in adaptive steps, each warm-started by the path's tangent: 15–60 Newton
    steps in all (median 17 at α = 1e-2, 29 at α = 1e-300 or 1e-4000) on 20 × 40 problems
    (docs/large-steps.md §6). Each costs r²·d for the Hessian and r³ for its Cholesky factor.

    Raises ConfigError for bad input, RuntimeError (with the residual reached) if the solve fails.
    """
    X, y = check_xy(X, y, source="hyperbolic_minimizer")
    d = X.shape[1]
    ell = _log_alpha(alpha, log_alpha, d)
    rho = np.zeros(d) if offset is None else _vector(offset, d, "offset")
    if not (0 < rtol < 1):
        raise ConfigError(f"hyperbolic_minimizer: rtol={rtol!r} must lie in (0, 1), e.g. 1e-10")
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(S > max(X.shape) * _EPS * S[0])) if S[0] > 0 else 0
    V = Vt[:r].T
    b = (U[:, :r].T @ y) / S[:r]  # Xβ = ŷ  ⇔  Vᵀβ = b, and V b is the minimum-norm OLS solution
    if r == d:
        return V @ b  # one minimiser of L: OLS, whatever α
    with np.errstate(over="ignore", invalid="ignore"):  # overshooting trial points: rejected
        return _Solver(V, b, ell, rho, rtol, max_newton).solve()


def _vector(value, d: int, name: str) -> np.ndarray:
    try:
        v = np.broadcast_to(np.asarray(value, dtype=float), (d,)).copy()
    except (TypeError, ValueError):
        raise ConfigError(f"hyperbolic_minimizer: {name} must be a number or {d} numbers (one per "
                          f"column of X), got {np.shape(value)}") from None
    if not np.all(np.isfinite(v)):
        raise ConfigError(f"hyperbolic_minimizer: {name} has non-finite entries, e.g. "
                          f"{v[~np.isfinite(v)][:3]}")
    return v


def _log_alpha(alpha, log_alpha, d: int) -> np.ndarray:
    if (alpha is None) == (log_alpha is None):
        raise ConfigError("hyperbolic_minimizer: give exactly one of alpha (α > 0) and log_alpha "
                          "(log α, for α below float range)")
    if log_alpha is not None:
        return _vector(log_alpha, d, "log_alpha")
    a = _vector(alpha, d, "alpha")
    if np.any(a <= 0):
        raise ConfigError(f"hyperbolic_minimizer: alpha must be positive, got {a[a <= 0][:3]} "
                          "(pass log_alpha for α below float range)")
    return np.log(a)


def _log_sinh(x: np.ndarray) -> np.ndarray:
    """log sinh(x) for x ≥ 0, without overflow (−inf at 0)."""
    with np.errstate(divide="ignore"):
        return np.where(x > 1, x + np.log1p(-np.exp(-2 * np.maximum(x, 1))) - np.log(2),
                        np.log(np.sinh(np.minimum(x, 1))))


def _log_cosh(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return x + np.log1p(np.exp(-2 * x)) - np.log(2)


def _beta(ell: np.ndarray, w: np.ndarray) -> np.ndarray:
    """α² sinh(w) from log α, overflow-safe (inf where the true value overflows)."""
    with np.errstate(over="ignore"):
        return np.sign(w) * np.exp(2 * ell + _log_sinh(np.abs(w)))


class _Solver:
    """Continuation from large α down to the target α, with a damped Newton corrector."""

    def __init__(self, V, b, ell, rho, rtol, max_newton):
        self.V, self.b, self.ell, self.rho = V, b, ell, rho
        self.rtol, self.loose = rtol, np.sqrt(rtol)  # the target's tolerance, and the path's
        self.budget = max_newton
        self.newton_steps = self.stages = self.last_iterations = 0

    def solve(self) -> np.ndarray:
        # The path: log α(τ) = ℓ + (1 − τ)·lift, lift = max(m − ℓ, 0), τ from 0 to 1. At τ = 0
        # every α_i² is at least e^{2m} = e⁴·‖β_mn‖∞ (β_mn = Vb, the minimum-norm solution),
        # where the dual is nearly quadratic. Along it the small α_i shrink geometrically together
        # (the ratios of their log α, relative to e^m, stay fixed), so supports settle early and
        # the dual grows nearly linearly in τ: the tangent predictor is nearly exact.
        scale = max(np.abs(self.V @ self.b).max(), np.finfo(float).tiny)
        self.lift = np.maximum(0.5 * np.log(scale) + 2 - self.ell, 0.0)
        tau = 0.0 if self.lift.any() else 1.0
        c, ok = self._newton(np.zeros(self.V.shape[1]), tau, self.budget)
        if not ok:
            self._fail(c, tau, "at the start of the path (small α raised to ‖β_mn‖∞^½)")
        step = 1 / max(self.lift.max(), 1.0)  # one unit of log α
        while tau < 1:  # double the step after an easy stage, quarter it after a failed one
            new = min(tau + step, 1.0)
            guess = c + (new - tau) * self._tangent(c, tau)
            self.stages += 1
            # A prediction whose residual exceeds ‖β‖ (a support change within the step) is not
            # corrected, as an overshot α² e^z costs Newton an iteration per unit of z: the step
            # is cut at once.
            ok = self._residual(guess, new)[0] <= np.linalg.norm(self._residual(c, tau)[1])
            if ok:
                trial, ok = self._newton(guess, new, min(30, self.budget - self.newton_steps))
            if ok:
                c, tau = trial, new
                step *= 2 if self.last_iterations <= 4 else 1
                continue
            step /= 4
            if step * self.lift.max() < 1e-6 or self.newton_steps >= self.budget:
                self._fail(c, tau, f"at τ = {tau:.6g} of the path to the target α")
        beta = _beta(self.ell, self.V @ self._polish(c) + self.rho)
        if not np.all(np.isfinite(beta)):  # cannot follow a converged solve; kept as a guard
            self._fail(c, 1.0, "with a non-finite β at the end")
        return beta

    def _ell(self, tau):
        return self.ell + (1 - tau) * self.lift

    def _residual(self, c, tau=1.0) -> tuple[float, np.ndarray]:
        """(‖Vᵀβ − b‖, β) at dual c on the path's α(τ)."""
        beta = _beta(self._ell(tau), self.V @ c + self.rho)
        with np.errstate(invalid="ignore", over="ignore"):
            return float(np.linalg.norm(self.V.T @ beta - self.b)), beta

    def _fail(self, c, tau, where):
        g, beta = self._residual(c, tau)
        raise RuntimeError(f"hyperbolic_minimizer: the Newton solve failed {where} after "
                           f"{self.newton_steps} Newton steps (max_newton={self.budget}): "
                           f"‖Vᵀβ − b‖ = {g:.3g} for ‖β‖ = {np.linalg.norm(beta):.3g}, asked for "
                           f"rtol={self.rtol:.3g} relative (V: an orthonormal basis of range(Xᵀ))")

    def _polish(self, c):
        """Up to three full Newton steps past the tolerance while they still halve the residual:
        quadratic convergence makes the last digits free."""
        gnorm, beta = self._residual(c)
        for _ in range(3):
            trial = c + _newton_direction(self._hessian(self.ell, self.V @ c + self.rho),
                                          self.b - self.V.T @ beta)
            tnorm, tbeta = self._residual(trial)
            if not tnorm < 0.5 * gnorm:
                break
            c, gnorm, beta = trial, tnorm, tbeta
        return c

    def _tangent(self, c, tau) -> np.ndarray:
        """dc/dτ along the path: H dc/dτ = −Vᵀ ∂β/∂τ, ∂β/∂τ = −2β ⊙ lift."""
        ell = self._ell(tau)
        w = self.V @ c + self.rho
        return _newton_direction(self._hessian(ell, w), self.V.T @ (2 * _beta(ell, w) * self.lift))

    def _hessian(self, ell, w):
        with np.errstate(over="ignore"):
            curvature = np.exp(2 * ell + _log_cosh(w))  # α² cosh w = sqrt(β² + α⁴)
        return (self.V.T * curvature) @ self.V

    def _newton(self, c, tau, budget):
        """Damped Newton on the dual at α(τ) from c, at most `budget` steps, until
        ‖Vᵀβ − b‖ ≤ tolerance·‖β‖ (rtol at τ = 1, its square root on the way): (c, converged)."""
        V, b, ell = self.V, self.b, self._ell(tau)
        rel = self.rtol if tau == 1 else self.loose
        w = V @ c + self.rho
        beta = _beta(ell, w)
        g = V.T @ beta - b
        gnorm = np.linalg.norm(g)
        for it in range(budget + 1):
            self.last_iterations = it
            if not np.isfinite(gnorm):
                return c, False
            if gnorm <= rel * np.linalg.norm(beta):
                return c, True
            if it == budget:
                return c, False
            self.newton_steps += 1
            direction = _newton_direction(self._hessian(ell, w), -g)
            h = V @ direction
            slope = g @ direction
            if not slope < 0:
                return c, False
            t = 1.0
            while True:
                w_new = w + t * h
                beta_new = _beta(ell, w_new)
                g_new = V.T @ beta_new - b
                g_new_norm = np.linalg.norm(g_new)
                change = _dual_change(ell, w, t * h) - t * (b @ direction)
                # Armijo; near the solution, where the change is below rounding, a full step
                # that halves the gradient is taken instead (Newton's quadratic phase).
                if change <= 1e-4 * t * slope or (t == 1.0 and g_new_norm < 0.5 * gnorm):
                    break
                t *= 0.5
                if t < 1e-14:
                    return c, False
            c, w, beta, g, gnorm = c + t * direction, w_new, beta_new, g_new, g_new_norm
        return c, False


def _dual_change(ell, w, h) -> float:
    """Σ α_i² (cosh(w_i + h_i) − cosh(w_i)) as Σ 2 α_i² sinh(w_i + h_i/2) sinh(h_i/2): each term to
    rounding, where the difference of the cosh would cancel."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(2 * _beta(ell, w + h / 2) * np.sinh(h / 2))
    return total if np.isfinite(total) else np.inf


def _newton_direction(H, rhs) -> np.ndarray:
    """H⁻¹ rhs for the PSD Hessian: Cholesky after Jacobi scaling; where directions have lost
    their curvature to underflow (tiny α), the pseudo-inverse, which leaves them alone."""
    diag = np.sqrt(np.diag(H))
    live = diag > 0
    out = np.zeros_like(rhs)
    if not live.any():
        return out
    Hs = H[np.ix_(live, live)] / np.outer(diag[live], diag[live])
    rs = rhs[live] / diag[live]
    try:
        factor = cho_factor(Hs, check_finite=False)
        pivots = np.abs(np.diag(factor[0]))
        if pivots.min() ** 2 > 1e4 * _EPS * len(pivots):
            out[live] = cho_solve(factor, rs, check_finite=False) / diag[live]
            return out
    except LinAlgError:
        pass
    values, vectors = eigh(Hs, check_finite=False)
    keep = values > 1e4 * _EPS * values.max() * len(values)
    out[live] = vectors[:, keep] @ ((vectors[:, keep].T @ rs) / values[keep]) / diag[live]
    return out
