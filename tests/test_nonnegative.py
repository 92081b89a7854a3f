"""Non-negative networks β = w^L (docs/nonnegative.md) against facts: the worked example by hand,
the first jump, the no-jump case, KKT conditions, an LP and a brute-force enumeration for the end
point, the non-negative Lasso, the network's own ODE, the exact flow at tiny α, and the model's GD
step against autograd and its dual against the gradients it was trained with."""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import nnls

from dlnlab.checks import ConfigError
from dlnlab.data import synthetic, worked_example
from dlnlab.models import PositiveNetwork
from dlnlab.models.base import DiagonalNetwork
from dlnlab.theory import MirrorMap, flow, min_sum_nonnegative_minimizer, saddle_path
from dlnlab.train import build
from tests.conftest import compose_cfg
from tests.test_models import gd


def grad(X, y, beta):
    return X.T @ (X @ beta - y) / len(y)


def assert_nonnegative_path(X, y, path, tol=1e-9):
    """What any correct one-sided path satisfies (docs/nonnegative.md §3–4)."""
    n = len(y)
    scale = max(np.abs(X.T @ y).max() / n, 1e-300)
    assert path.kind == "nonnegative" and path.converged
    assert path.times[0] == 0 and np.all(np.diff(path.times) > 0)
    assert np.all(np.diff(path.losses) < 0)  # L(β_k) strictly decreases
    np.testing.assert_array_equal(path.betas[0], 0)
    for beta, s, face in zip(path.betas, path.duals, path.faces):
        assert np.all(beta >= 0) and np.all((face == 0) | (face == 1))
        assert s.max() <= 1  # exactly: saturated coordinates are set to 1
        on = beta > 0
        assert np.all(s[on] == 1) and np.all(face[on] == 1)  # s ∈ ∂(Σβ + ι_{β≥0})
        g = grad(X, y, beta)  # KKT of the face problem (an NNLS)
        assert np.abs(g[on]).max(initial=0) <= 10 * tol * scale
        assert np.all(g[face == 1] >= -10 * tol * scale)
    grid = np.linspace(0, path.times[-1] * 1.5 + 1, 2001)
    assert path.dual(grid).max() <= 1 + 1e-12
    np.testing.assert_allclose(path.dual(path.times[1:]), path.duals[1:], atol=1e-12)
    # s = −∫∇L(β°) over the whole path, saturated coordinates included (there ∇L_i = 0)
    riemann = -np.diff(path.times) @ np.array([grad(X, y, b) for b in path.betas[:-1]])
    np.testing.assert_allclose(path.duals[-1], riemann, atol=1e-8 * max(1.0, path.times[-1]))
    final = grad(X, y, path.betas[-1])  # the last saddle minimises L over β ≥ 0
    assert np.all(final >= -10 * tol * scale)
    assert np.all(path.velocities[-1] <= 10 * tol * scale)  # no dual moves up any more
    reference = min_sum_nonnegative_minimizer(X, y)
    np.testing.assert_allclose(path.betas[-1], reference,
                               atol=1e-9 * max(1, np.abs(reference).max()))


def test_worked_example_by_hand():
    """docs/nonnegative.md §3.3: the signed path up to t = 8, then ∇L(β₂) ≥ 0 and the path stops;
    the signed path's third saddle needs β₃ < 0."""
    X, y = worked_example()
    path = saddle_path(X, y, kind="nonnegative")
    np.testing.assert_allclose(path.times, [0, 2, 8], rtol=1e-14)
    np.testing.assert_allclose(path.betas, [[0, 0, 0, 0], [0.8, 0, 0, 0], [0, 0, 1.4, 0]],
                               atol=1e-14)
    np.testing.assert_allclose(path.losses, [1 / 4, 1 / 20, 1 / 200], rtol=1e-13)
    np.testing.assert_allclose(path.duals[-1], [1, -0.4, 1, -0.84], atol=1e-14)
    # coordinate 0 is released (∇L_0 = 0.025 > 0), coordinate 2 sits at 1, 1 and 3 keep falling
    np.testing.assert_allclose(path.velocities[-1], [-0.025, -0.065, 0, -0.049], atol=1e-14)
    assert path.entering == [[], [0], [2]] and path.leaving == [[], [], [0]]
    signed = saddle_path(X, y)
    np.testing.assert_array_equal(signed.times[:3], path.times)
    assert signed.betas[-1, 3] < 0
    assert_nonnegative_path(X, y, path)
    np.testing.assert_allclose(path.dual(20.0), [1 - 12 * 0.025, -0.4 - 12 * 0.065, 1,
                                                 -0.84 - 12 * 0.049], atol=1e-13)


def test_kind_is_checked():
    X, y = worked_example()
    with pytest.raises(ConfigError, match="kind='positive' is unknown"):
        saddle_path(X, y, kind="positive")


def test_first_jump_is_the_largest_positive_correlation():
    """t₁ = 1/max_i(−∇L(0))_i = n/max_i ⟨x_i, y⟩, on that column: not the largest |⟨x_i, y⟩|,
    which the signed path would take, when that one is negative."""
    checked = 0
    for seed in range(40):
        X, y = synthetic(n=8, d=12, k=3, noise=0.3, seed=seed)
        c = X.T @ y
        if c.max() <= 0 or np.argmax(np.abs(c)) == np.argmax(c):
            continue
        checked += 1
        i = int(np.argmax(c))
        path = saddle_path(X, y, kind="nonnegative")
        assert path.times[1] == pytest.approx(len(y) / c[i], rel=1e-14)
        expected = np.zeros(12)
        expected[i] = c[i] / (X[:, i] @ X[:, i])
        np.testing.assert_allclose(path.betas[1], expected, rtol=1e-13, atol=1e-15)
        assert saddle_path(X, y).entering[1] != [i]
    assert checked >= 5


def test_no_positive_correlation_no_jump():
    """Xᵀy ≤ 0: ∇L(0) ≥ 0, so β = 0 is the minimiser of L over β ≥ 0 (L is convex). The path is
    the one saddle β ≡ 0 for ever, s(t) = t·Xᵀy/n falling; at α = 1e-100 the flow agrees: β stays
    below α² (it only decays) and L stays L(0)."""
    rng = np.random.default_rng(0)
    X = np.abs(rng.standard_normal((5, 6)))
    y = -np.abs(rng.standard_normal(5))
    X[:, 2] = 0  # a correlation of exactly 0: that dual never moves
    path = saddle_path(X, y, kind="nonnegative")
    assert len(path) == 1 and path.converged
    np.testing.assert_allclose(path.velocities[0], X.T @ y / 5, rtol=1e-15)
    assert np.all(path.velocities[0] <= 0)
    np.testing.assert_array_equal(path.beta([1.0, 1e3]), 0)
    np.testing.assert_allclose(path.dual(50.0), 50 * X.T @ y / 5, rtol=1e-14)
    assert path.loss(1e6) == y @ y / 10
    assert np.all(min_sum_nonnegative_minimizer(X, y) == 0)
    f = flow(X, y, -100 * math.log(10), [1.0, 10.0, 100.0], depth=2, nonnegative=True)
    assert f.betas.max() <= 1e-200
    np.testing.assert_allclose(f.losses, y @ y / 10, rtol=1e-14)
    np.testing.assert_allclose(f.duals, path.dual([1.0, 10.0, 100.0]), rtol=1e-9, atol=1e-12)


def brute_force_min_sum(X, y):
    """min Σβ over the non-negative minimisers of L by enumerating supports (tiny problems only):
    every vertex of {β ≥ 0 : Xβ = ŷ₊} has independent columns, ŷ₊ the NNLS fit."""
    n, d = X.shape
    fit = X @ nnls(X, y)[0]
    best, best_sum = np.zeros(d), np.inf if np.abs(fit).max() > 0 else 0.0
    for k in range(1, min(n, d) + 1):
        for S in itertools.combinations(range(d), k):
            cols = X[:, S]
            if np.linalg.matrix_rank(cols) < k:
                continue
            b = np.linalg.lstsq(cols, fit, rcond=None)[0]
            if b.min() < -1e-12 or np.abs(cols @ b - fit).max() > 1e-9 * max(1, np.abs(fit).max()):
                continue
            if b.sum() < best_sum - 1e-12:
                best, best_sum = np.zeros(d), b.sum()
                best[list(S)] = b
    return best


def test_the_reference_lp_against_brute_force():
    rng = np.random.default_rng(5)
    for trial in range(30):
        n, d = int(rng.integers(1, 4)), int(rng.integers(1, 7))
        X = rng.standard_normal((n, d))
        y = X @ np.abs(rng.standard_normal(d)) if trial % 2 else rng.standard_normal(n)
        np.testing.assert_allclose(min_sum_nonnegative_minimizer(X, y), brute_force_min_sum(X, y),
                                   atol=1e-9)


def nonnegative_problems(count: int, seed: int):
    """Reachable sparse non-negative signals, noisy and signed ones; over- and under-determined."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        n = int(rng.integers(1, 16))
        d = int(rng.integers(1, 30))
        X, y = synthetic(n=n, d=d, k=min(d, 3), noise=float(rng.uniform(0, 1)) * (trial % 3 > 0),
                         seed=trial, features="correlated" if trial % 4 == 0 else "gaussian",
                         rho=0.8)
        if trial % 3 == 0:  # y = Xβ* with β* ≥ 0: reachable
            y = X @ np.abs(np.linalg.lstsq(X, y, rcond=None)[0] * (rng.random(d) < 0.3))
        yield X, y


@pytest.mark.parametrize("seed", range(3))
def test_random_problems(seed):
    for X, y in nonnegative_problems(70, seed):
        if not np.any(X.T @ y > 0):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # continuous random data are in general position
            path = saddle_path(X, y, kind="nonnegative")
        assert_nonnegative_path(X, y, path)


def test_time_average_is_the_nonnegative_lasso_before_any_deactivation():
    """(1/t)∫β° = argmin_{β≥0} L(β) + Σβ/t: checked by that problem's optimality conditions."""
    X, y = synthetic(n=20, d=50, k=4, noise=0.1, seed=4)
    path = saddle_path(X, y, kind="nonnegative")
    first_exit = next((k for k, out in enumerate(path.leaving) if out), len(path))
    assert first_exit >= 4
    end = path.times[first_exit] if first_exit < len(path) else path.times[-1] * 2
    for t in np.linspace(path.times[1] * 1.01, end * 0.999, 7):
        b = path.time_average(t)
        corr = X.T @ (y - X @ b) / len(y)  # KKT: corr = 1/t where b > 0, corr ≤ 1/t elsewhere
        on = b > 0
        assert np.all(b >= 0)
        np.testing.assert_allclose(corr[on], 1 / t, rtol=1e-9)
        assert np.all(corr[~on] <= 1 / t * (1 + 1e-9))


def direct(X, y, alpha, t_end, depth, shape, factors=False):
    """β(t) by integrating the network's own ODE in τ (no dual): dw/dτ = −L g w^(L−1) for β = w^L;
    with `factors`, β = w₁ ⋯ w_L (dw_l/dτ = −g Π_{m≠l} w_m), L factors from the same α·a, whose
    clock is L·T_α (docs/nonnegative.md §1)."""
    n, d = X.shape
    L = depth
    a = np.broadcast_to(np.asarray(shape, dtype=float), (d,))
    T = alpha ** (-(L - 2)) / (L * (L - 2)) if L > 2 else math.log(1 / alpha) / 2
    if factors:
        T *= L

        def rhs(tau, z):
            w = z.reshape(L, d)
            g = X.T @ (X @ w.prod(axis=0) - y) / n
            return np.concatenate([-g * np.prod(np.delete(w, m, axis=0), axis=0) for m in range(L)])
        z0 = np.tile(alpha * a, L)
        beta = lambda z: z.reshape(L, d).prod(axis=0)  # noqa: E731
    else:
        def rhs(tau, w):
            return -L * (X.T @ (X @ w**L - y) / n) * w ** (L - 1)
        z0 = alpha * a
        beta = lambda w: w**L  # noqa: E731
    sol = solve_ivp(rhs, (0, t_end * T), z0, method="DOP853", rtol=1e-12, atol=1e-14 * alpha)
    return beta(sol.y[:, -1])


@pytest.mark.parametrize("depth, alpha, shape, factors", [
    (2, 1e-3, 1.0, False), (2, 1e-2, "random", False), (3, 0.1, 1.0, False),
    (4, 0.3, "random", False), (3, 0.05, "random", False), (2, 1e-3, "random", True),
    (3, 0.1, 1.0, True)])
def test_flow_matches_direct_integration_of_the_network(depth, alpha, shape, factors):
    """The mirror map of docs/nonnegative.md §2 against the network's own ODE, past two jumps."""
    X, y = synthetic(n=6, d=8, k=2, seed=7)
    y = y + X[:, 0]  # positive correlations, so that coordinates enter
    shape = np.random.default_rng(0).uniform(0.5, 1.5, 8) if shape == "random" else shape
    t_end = 0.5 * sum(saddle_path(X, y, kind="nonnegative").times[2:4])
    f = flow(X, y, math.log(alpha), [t_end], depth=depth, shape=shape, nonnegative=True)
    expected = direct(X, y, alpha, t_end, depth, shape, factors)
    assert expected.max() > 0.1  # past the first jumps: O(1) coordinates
    np.testing.assert_allclose(f.betas[0], expected, rtol=1e-8, atol=1e-10)


def test_mirror_map_is_overflow_safe_and_checked():
    """α = 1e-1000: β = a²·10^(−2000(1−s)) from log α, no α² formed; dβ/ds = 2 log(1/α)·β."""
    log_alpha = -1000 * math.log(10)
    m = MirrorMap(log_alpha, depth=2, shape=np.array([1.0, 2.0, 0.5]), nonnegative=True)
    s = np.array([1.0, 1 - 1e-3, 0.9995])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        beta, slope = m.beta(s), m.dbeta_ds(s)
    np.testing.assert_allclose(beta, [1.0, 4e-2, 0.25 * 10**-1.0], rtol=1e-12)
    np.testing.assert_allclose(slope, -2 * log_alpha * beta, rtol=1e-15)
    assert m.beta(np.array([-5.0]))[0] == 0.0
    deep = MirrorMap(math.log(1e-3), depth=3, shape=1.0, nonnegative=True)
    np.testing.assert_allclose(deep.beta(np.array([0.0, 0.5])), [1e-9, 1e-9 * 0.5**-3], rtol=1e-14)
    assert np.all(deep.beta(np.array([1.0, 2.0])) > 1e190)  # past the pole: capped, huge, finite
    with pytest.raises(ConfigError, match="nonnegative=True is the network β = w\\^L"):
        MirrorMap(log_alpha, depth=None, nonnegative=True)


def plateau_probes(path, horizon):
    """One time per plateau, as far as possible from the jumps and, for the coordinates off the
    support, from s_i = 1 (the flow's transitions have width ~1/log(1/α)); and that margin."""
    probes, margins = [], []
    ends = np.append(path.times[1:], horizon)
    for k, (start, end) in enumerate(zip(path.times, ends)):
        grid = np.linspace(start, end, 402)[1:-1]
        off = path.betas[k] == 0
        margin = np.min(1 - path.dual(grid)[:, off], axis=1, initial=np.inf)
        margin = np.minimum(margin, np.minimum(grid - start, end - grid) / horizon)
        probes.append(grid[np.argmax(margin)])
        margins.append(margin.max())
    return np.array(probes), np.array(margins)


@pytest.mark.slow
def test_path_is_the_limit_of_the_positive_network():
    """20 random problems, flow at α = 1e-100 and 1e-300 (docs/nonnegative.md §5): supports equal
    on every plateau clear of the transitions; jump times (flow crossing the midpoint of L(β_{k−1})
    and L(β_k)) within 3e-2 relative at 1e-100 (median 1e-2), within 1e-2 at 1e-300 and, with the
    C/log(1/α) term extrapolated out from the two α's, within 1e-3 of the limit's."""
    rng = np.random.default_rng(1)
    plateaus = jumps = 0
    raw, deepest, extrapolated = [], [], []
    for _ in range(20):
        n, d = int(rng.integers(2, 10)), int(rng.integers(2, 16))
        X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
        path = saddle_path(X, y, kind="nonnegative")
        if len(path) < 2:
            continue
        levels = (path.losses[:-1] + path.losses[1:]) / 2
        probes, margins = plateau_probes(path, path.times[-1] * 1.5 + 1)
        crossings = {}
        for log10_alpha in (-100, -300):
            f = flow(X, y, log10_alpha * math.log(10), probes, depth=2, nonnegative=True,
                     levels=levels)
            crossings[log10_alpha] = f.crossings
            if log10_alpha == -100:
                for k in np.flatnonzero(margins >= 0.05):  # off-support β ≤ α^0.1 = 1e-10 there
                    plateaus += 1
                    assert np.flatnonzero(f.betas[k] > 1e-6).tolist() == path.supports()[k]
        jumps += len(path) - 1
        raw.append(np.abs(crossings[-100] / path.times[1:] - 1).max())
        deepest.append(np.abs(crossings[-300] / path.times[1:] - 1).max())
        a1, a2 = 100 * math.log(10), 300 * math.log(10)
        rich = (a2 * crossings[-300] - a1 * crossings[-100]) / (a2 - a1)
        extrapolated.append(np.abs(rich / path.times[1:] - 1).max())
    assert plateaus >= 50 and jumps >= 50
    assert max(raw) <= 3e-2 and np.median(raw) <= 1e-2  # C/log(1/α): C up to ~5 at 1e-100
    assert max(deepest) <= 1e-2 and max(extrapolated) <= 1e-3


def test_depth_3_converges_polynomially_to_the_same_limit():
    """At depth 3 (uniform shape) jump times are off by O(α) (docs/nonnegative.md §5)."""
    rng = np.random.default_rng(2)
    for _ in range(3):
        X, y = rng.standard_normal((5, 8)), rng.standard_normal(5)
        path = saddle_path(X, y, kind="nonnegative")
        levels = (path.losses[:-1] + path.losses[1:]) / 2
        errors = []
        for alpha in (1e-3, 1e-6):
            f = flow(X, y, math.log(alpha), [path.times[-1] * 1.2 + 1], depth=3, nonnegative=True,
                     levels=levels)
            errors.append((f.crossings - path.times[1:]) / path.times[1:] / alpha)
            np.testing.assert_allclose(f.betas[-1], path.betas[-1], atol=1e-3)
        assert np.abs(errors[1]).max() <= 5
        np.testing.assert_allclose(errors[0], errors[1], rtol=0.05, atol=0.05)  # ∝ α


# ---- the built-in model ---------------------------------------------------------------------

def test_clocks_and_start():
    assert PositiveNetwork(3, 1e-7).time_scale() == pytest.approx(math.log(1e7) / 2)
    assert PositiveNetwork(3, 1e-2, depth=3).time_scale() == pytest.approx(1e2 / 3)
    assert PositiveNetwork(3, 1e-2, depth=5).time_scale() == pytest.approx(1e6 / 15)
    model = PositiveNetwork(3, 0.1, depth=3, shape=[1.0, 2.0, 0.5])
    np.testing.assert_allclose(model.beta().detach().numpy(), [1e-3, 8e-3, 1.25e-4], rtol=1e-14)
    np.testing.assert_allclose(model.dual().numpy(), 0, atol=1e-15)


@pytest.mark.parametrize("depth, alpha, lr", [(2, 1e-30, 1e-2), (3, 0.05, 2e-3), (4, 0.1, 2e-3)])
@pytest.mark.parametrize("shape", ["uniform", "random"])
def test_dual_is_minus_the_integrated_gradient_and_maps_to_beta(depth, alpha, lr, shape):
    """GD past the worked example's first jump (t₁ = 2): the dual read from w equals −(lr/T_α)Σ∇L
    up to GD's O(lr²) a step (bound: L²·lr²Σ∇L²/T_α, docs/nonnegative.md §2), and the mirror map
    takes it back to β."""
    X, y = worked_example()
    model = PositiveNetwork(4, alpha, depth=depth, shape=shape, shape_seed=3)
    steps = math.ceil(5.0 * model.time_scale() / lr)
    total, squares = gd(model, X, y, lr, steps)
    beta = model.beta().detach().numpy()
    assert beta.max() > 0.5 and beta.min() >= 0  # past a jump, and non-negative
    s = model.dual().numpy()
    bound = depth**2 * lr**2 * squares / model.time_scale()
    assert np.all(np.abs(s + total * lr / model.time_scale()) <= bound + 1e-12)
    np.testing.assert_allclose(model.mirror_map().beta(s), beta, rtol=1e-10, atol=1e-300)
    assert model.mirror_map().nonnegative


def test_gd_tracks_the_exact_flow():
    """GD at lr and lr/2 against flow(nonnegative=True) at the same α: an O(lr) gap that halves."""
    X, y = worked_example()
    gaps = []
    for lr in (4e-3, 2e-3):
        model = PositiveNetwork(4, 1e-3, shape="random")
        steps = round(3.0 * model.time_scale() / lr)
        gd(model, X, y, lr, steps)
        m = model.mirror_map()
        f = flow(X, y, m.log_alpha, [steps * lr / model.time_scale()], depth=2, shape=m.shape,
                 nonnegative=True)
        gaps.append(np.abs(model.beta().detach().numpy() - f.betas[0]).max())
    assert gaps[0] < 0.02
    assert gaps[0] / gaps[1] == pytest.approx(2, rel=0.1)


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_closed_form_step_equals_autograd(depth):
    """descend() against the base class's autograd step (`DiagonalNetwork.descend`, called
    directly)."""
    torch.manual_seed(0)
    h = 0.1 * torch.randn(5, dtype=torch.float64)
    closed = PositiveNetwork(5, 0.3, depth=depth, shape="random")
    auto = PositiveNetwork(5, 0.3, depth=depth, shape="random")
    for _ in range(3):
        with torch.no_grad():
            closed.descend(h)
            DiagonalNetwork.descend(auto, h)
    torch.testing.assert_close(closed.w, auto.w, rtol=1e-14, atol=1e-16)
    assert not torch.equal(closed.w, torch.as_tensor(0.3 * closed.shape))  # it moved


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=0.0), "alpha=0.0 must be a number in (0, 1)"),
    (dict(alpha=1e-3, depth=1), "depth=1 must be an integer ≥ 2"),
    (dict(alpha=1e-3, shape=[1.0, -1.0, 1.0]), "must be 3 finite positive numbers"),
    (dict(alpha=1e-3, dtype="float16"), "dtype='float16' is unknown"),
    (dict(alpha=1e-30, dtype="float32"), "too small for float32"),
    (dict(alpha=1e-200, depth=4), "infinite clock"),
])
def test_bad_model_arguments_name_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PositiveNetwork(3, **kwargs)


def test_config_builds_the_model():
    cfg = compose_cfg("model=positive", "model.depth=3", "model.alpha=0.01")
    model = build(cfg.model, "model", d=7)
    assert isinstance(model, PositiveNetwork) and model.depth == 3 and model.w.shape == (7,)
    with pytest.raises(ConfigError, match="model.depth=1"):
        build(compose_cfg("model=positive", "model.depth=1").model, "model", d=7)
