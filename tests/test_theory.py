"""The theory against facts: the published worked example, closed forms, KKT conditions, an LP,
the Lasso optimality conditions, and direct integration of the network's own equations."""

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dlnlab.checks import ConfigError
from dlnlab.data import synthetic, worked_example
from dlnlab.theory import GeneralPositionWarning, flow, min_l1_minimizer, ols, saddle_path

# Two coordinates leave at one jump (found by a search over small rational problems, checked below
# against the finite-α flow): jump 3 brings coordinate 3 in and drops coordinates 0 and 2.
DOUBLE_EXIT = (np.array([[-1.6, 0.2, 1.0, 0.8, 1.2, 1.9], [-1.1, -0.8, -0.9, -0.4, -1.0, -1.6],
                         [-0.2, -0.6, 1.7, 1.4, 0.8, 0.3]]), np.array([0.8, -0.4, 1.4]))


def assert_path_properties(X, y, path, tol=1e-9):
    """The facts of docs/theory.md §3.5 that any correct saddle path satisfies."""
    n = len(y)
    scale = np.abs(X.T @ y).max() / n
    assert path.converged
    assert path.times[0] == 0 and np.all(np.diff(path.times) > 0)
    assert np.all(np.diff(path.losses) < 0)  # L(β_k) strictly decreases
    np.testing.assert_array_equal(path.betas[0], 0)
    for beta, s, face in zip(path.betas, path.duals, path.faces):
        assert np.abs(s).max() <= 1  # exactly: saturated coordinates are set to ±1
        support = beta != 0
        np.testing.assert_array_equal(np.sign(beta[support]), s[support])  # s ∈ ∂‖β‖₁
        np.testing.assert_array_equal(np.sign(beta[support]), face[support])
        g = (
            X.T @ (X @ beta - y) / n
        )  # KKT of the face problem: stationary on the support, no descent along the face
        assert np.abs(g[support]).max(initial=0) <= tol * scale * 10
        assert np.all(face * g >= -tol * scale * 10)
    grid = np.linspace(0, path.times[-1] * 1.2, 2001)
    assert np.abs(path.dual(grid)).max() <= 1 + 1e-12  # ‖s(t)‖∞ ≤ 1 along the path
    np.testing.assert_allclose(
        path.dual(path.times[1:]), path.duals[1:], atol=1e-12
    )  # s is continuous
    final = X.T @ (X @ path.betas[-1] - y) / n
    assert np.abs(final).max() <= tol * scale * 10  # the last saddle is a global minimiser
    np.testing.assert_allclose(
        path.betas[-1], min_l1_minimizer(X, y), atol=1e-9 * max(1, np.abs(path.betas[-1]).max())
    )


def test_worked_example_exactly():
    X, y = worked_example()
    path = saddle_path(X, y)
    np.testing.assert_allclose(path.times, [0, 2, 8, 552 / 49], rtol=1e-14)
    np.testing.assert_allclose(
        path.betas,
        [[0, 0, 0, 0], [0.8, 0, 0, 0], [0, 0, 1.4, 0], [0, 0, 10 / 7, -10 / 49]],
        atol=1e-14,
    )
    assert path.entering == [[], [0], [2], [3]]
    assert path.leaving == [[], [], [0], []]  # coordinate 1 (index 0) deactivates at t = 8
    assert_path_properties(X, y, path)
    np.testing.assert_allclose(path.beta([7.9, 8.1]), [[0.8, 0, 0, 0], [0, 0, 1.4, 0]], atol=1e-14)


@pytest.mark.parametrize("seed", range(5))
def test_first_jump_is_explicit(seed):
    X, y = synthetic(n=15, d=40, k=3, noise=0.2, seed=seed)
    path = saddle_path(X, y)
    assert path.times[1] == pytest.approx(len(y) / np.abs(X.T @ y).max(), rel=1e-14)
    i = np.argmax(np.abs(X.T @ y))
    expected = np.zeros(40)
    expected[i] = X[:, i] @ y / (X[:, i] @ X[:, i])  # the 1-D least-squares fit on that column
    np.testing.assert_allclose(path.betas[1], expected, rtol=1e-13, atol=1e-15)


def test_ends_at_ols_when_underparametrised():
    X, y = synthetic(n=60, d=12, k=4, noise=0.5, seed=3)
    path = saddle_path(X, y)
    np.testing.assert_allclose(path.betas[-1], ols(X, y), atol=1e-10)
    assert_path_properties(X, y, path)


def test_several_coordinates_leave_at_one_jump():
    X, y = DOUBLE_EXIT
    path = saddle_path(X, y)
    assert path.entering[3] == [3] and path.leaving[3] == [0, 2]
    assert_path_properties(X, y, path)
    # independent check: the finite-α flow's jump times approach the limit's like C / log(1/α),
    # the same C at α = 1e-300 and 1e-1000 (docs/theory.md §5.1)
    errors = []
    for log10_alpha in (-300, -1000):
        f = flow(X, y, log10_alpha * math.log(10), [path.times[-1] + 5], levels=path.jump_levels())
        errors.append((f.crossings - path.times[1:]) * -log10_alpha * math.log(10))
    np.testing.assert_allclose(errors[0], errors[1], rtol=0.05, atol=0.5)


@pytest.mark.parametrize("design", ["over", "under", "correlated", "square"])
def test_hundreds_of_random_problems(design):
    rng = np.random.default_rng({"over": 0, "under": 1, "correlated": 2, "square": 3}[design])
    for trial in range(75):
        n = int(rng.integers(1, 20))
        d = {"over": n + int(rng.integers(1, 30)), "under": max(1, n - int(rng.integers(0, n))),
             "correlated": int(rng.integers(1, 40)), "square": n}[design]
        X, y = synthetic(n=n, d=d, k=min(d, 3), noise=float(rng.uniform(0, 1)), seed=trial,
                         features="correlated" if design == "correlated" else "gaussian", rho=0.9)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # continuous random data are in general position
            path = saddle_path(X, y)
        assert_path_properties(X, y, path)


def test_deactivations_are_common_and_correct():
    """Active sets are not monotone: coordinates leave, and the path stays a valid saddle path."""
    X, y = synthetic(n=30, d=200, k=5, noise=0.5, seed=0)
    path = saddle_path(X, y)
    assert sum(len(out) > 0 for out in path.leaving) >= 3
    assert_path_properties(X, y, path)


def test_time_average_is_the_lasso_before_any_deactivation():
    """(1/t)∫β° = argmin L(β) + ‖β‖₁/t: checked by the Lasso's optimality conditions."""
    X, y = synthetic(n=20, d=50, k=4, noise=0.1, seed=4)
    path = saddle_path(X, y)
    first_exit = next(k for k, out in enumerate(path.leaving) if out)
    for t in np.linspace(path.times[1] * 1.01, path.times[first_exit] * 0.999, 7):
        b = path.time_average(t)
        corr = (
            X.T @ (y - X @ b) / len(y)
        )  # KKT: corr = sign(b)/t on the support, |corr| ≤ 1/t elsewhere
        on = b != 0
        np.testing.assert_allclose(corr[on], np.sign(b[on]) / t, rtol=1e-9)
        assert np.all(np.abs(corr[~on]) <= 1 / t * (1 + 1e-9))


@pytest.mark.slow
def test_flow_at_tiny_alpha_matches_the_limit_between_jumps():
    X, y = synthetic(n=10, d=20, k=3, noise=0.1, seed=5)
    path = saddle_path(X, y)
    mids = (path.times[:-1] + path.times[1:]) / 2
    f = flow(X, y, -300 * math.log(10), mids)
    separated = np.diff(path.times) > 0.05 * path.times[1:]
    after_exit = np.array([bool(out) for out in path.leaving[:-1]])
    keep = separated & ~after_exit
    assert keep.sum() >= 3
    np.testing.assert_allclose(f.betas[keep], path.betas[:-1][keep], atol=1e-6)
    np.testing.assert_allclose(f.duals, path.dual(mids), atol=1e-2)  # s converges uniformly


def direct(X, y, alpha, t_end, depth=None, shape=1.0):
    """β(t) by integrating the network's own parameter ODEs in τ = t·T_α (no dual variable)."""
    n, d = X.shape
    a = np.broadcast_to(np.asarray(shape, dtype=float), (d,))
    if depth is None:  # du/dτ = −g v, dv/dτ = −g u
        T, z0 = math.log(1 / alpha), np.concatenate([math.sqrt(2) * alpha * a, np.zeros(d)])
        beta = lambda z: z[:d] * z[d:]  # noqa: E731

        def rhs(tau, z):
            g = X.T @ (X @ beta(z) - y) / n
            return np.concatenate([-g * z[d:], -g * z[:d]])
    else:  # dw±/dτ = ∓L g w±^(L−1)
        L = depth
        T = alpha ** (-(L - 2)) / (L * (L - 2)) if L > 2 else math.log(1 / alpha) / 2
        z0 = np.concatenate([alpha * a, alpha * a])
        beta = lambda z: z[:d] ** L - z[d:] ** L  # noqa: E731

        def rhs(tau, z):
            g = X.T @ (X @ beta(z) - y) / n
            return np.concatenate([-L * g * z[:d] ** (L - 1), L * g * z[d:] ** (L - 1)])
    sol = solve_ivp(rhs, (0, t_end * T), z0, method="DOP853", rtol=1e-12, atol=1e-14 * alpha)
    return beta(sol.y[:, -1])


@pytest.mark.parametrize(
    "depth, alpha, shape",
    [(None, 1e-3, 1.0), (None, 1e-2, "random"), (2, 1e-3, 1.0), (3, 0.1, 1.0), (4, 0.3, "random")],
)
def test_flow_matches_direct_integration_of_the_network(depth, alpha, shape):
    X, y = synthetic(n=6, d=8, k=2, seed=7)
    shape = np.random.default_rng(0).uniform(0.5, 1.5, 8) if shape == "random" else shape
    t_end = 1.5 * saddle_path(X, y).times[1]
    f = flow(X, y, math.log(alpha), [t_end], depth=depth, shape=shape)
    np.testing.assert_allclose(
        f.betas[0], direct(X, y, alpha, t_end, depth, shape), rtol=1e-6, atol=1e-9
    )


def test_flow_losses_decrease_and_crossings_are_ordered():
    X, y = worked_example()
    path = saddle_path(X, y)
    f = flow(X, y, math.log(1e-30), np.linspace(0, 15, 61), levels=path.jump_levels())
    assert np.all(np.diff(f.losses) <= 1e-15)
    assert np.all(np.diff(f.crossings) > 0)
    # the last jump is 5.4% early at α = 1e-30: its loss is 99.6% gone by t = 11.2 < 552/49 (a slow
    # jump, |∇L| = 0.049, to a target |β| < ½; docs/jump-times.md), and 1.6% early at α = 1e-100
    np.testing.assert_allclose(f.crossings, path.times[1:], rtol=0.06)


def test_degenerate_inputs():
    X, y = synthetic(n=8, d=10, k=2, seed=0)
    # y = 0: the origin is already a minimiser, no jump at all
    assert len(saddle_path(X, np.zeros(8))) == 1
    # a zero column never enters
    Xz = X.copy()
    Xz[:, 4] = 0
    path = saddle_path(Xz, y)
    assert np.all(path.betas[:, 4] == 0)
    assert_path_properties(Xz, y, path)
    # duplicated columns: general position fails, with a warning, and the path still ends at a
    # minimiser
    Xd = np.column_stack([X, X[:, np.argmax(np.abs(X.T @ y))]])
    with pytest.warns(GeneralPositionWarning):
        path = saddle_path(Xd, y)
    assert path.losses[-1] <= 1e-20
    assert np.abs(path.betas[-1]).sum() == pytest.approx(
        np.abs(min_l1_minimizer(Xd, y)).sum(), rel=1e-9
    )
    # n = 1 and d = 1
    np.testing.assert_allclose(
        saddle_path(np.array([[2.0, 1.0, -3.0]]), np.array([6.0])).betas[-1], [0, 0, -2]
    )
    one = saddle_path(np.array([[1.0], [2.0]]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(one.times, [0, 2 / 3]) and np.testing.assert_allclose(
        one.betas[-1], [0.6]
    )


def test_iteration_cap_and_bad_values():
    X, y = synthetic(n=10, d=30, k=3, seed=1)
    with pytest.warns(RuntimeWarning, match="max_iter=2"):
        path = saddle_path(X, y, max_iter=2)
    assert not path.converged and len(path) == 3
    X[3, 4] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        saddle_path(X, y)
    with pytest.raises(ConfigError, match="rows"):
        saddle_path(np.ones((3, 2)), np.ones(4))
    with pytest.raises(ConfigError, match="log_alpha"):
        flow(np.ones((3, 2)), np.ones(3), 0.5, [1.0])
