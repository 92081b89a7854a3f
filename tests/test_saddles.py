"""Round-off in Algorithm 1 (docs/theory.md §3): coordinates that are zero in exact arithmetic are
exact zeros on the path (supports, entering and leaving sets), checked by hand-derived cases and by
an independent re-solve of every face with scipy's NNLS; an interpolating saddle's loss is 0."""

import numpy as np
import pytest
from scipy.optimize import nnls

from dlnlab.data import synthetic
from dlnlab.theory import min_l1_minimizer, ols, saddle_path
from dlnlab.theory.face import ZERO_SHARE
from tests.test_theory import assert_path_properties

# y = 1.4·x_1 exactly: coordinate 2 enters first, and when 1 joins, 2's least-squares value is
# exactly 0 (in floating point −1.4e-16), so 2 leaves and the path ends at 1.4·e_1 with L = 0.
TIE = np.array([[-0.4, -0.9, 1.5], [0.0, -0.4, 0.2]])


def test_a_coordinate_that_ties_at_zero_leaves_exactly():
    X = TIE
    y = X @ [0.0, 1.4, 0.0]
    path = saddle_path(X, y)
    assert path.supports() == [[], [2], [1]]
    assert path.entering == [[], [2], [1]] and path.leaving == [[], [], [2]]
    assert path.betas[-1, 2] == 0.0 and path.betas[-1, 0] == 0.0
    assert path.betas[-1, 1] == pytest.approx(1.4, rel=1e-15)
    assert path.losses[-1] == 0.0
    # by hand: t_1 = n / ‖Xᵀy‖∞ on column 2 (correlation −2.002), β_1 = ⟨x_2, y⟩ / ‖x_2‖²; then
    # s_1 = t_1·Xᵀy/n moves at −∇L(β_1) and coordinate 1 reaches +1 first
    c = X.T @ y
    t1 = 2 / abs(c[2])
    b1 = c[2] / (X[:, 2] @ X[:, 2])
    g = X.T @ (X[:, 2] * b1 - y) / 2
    s1 = t1 * c / 2
    np.testing.assert_allclose(path.times, [0, t1, t1 + (1 - s1[1]) / -g[1]], rtol=1e-13)
    assert path.betas[1, 2] == pytest.approx(b1, rel=1e-14)
    assert_path_properties(X, y, path)


def test_an_exactly_sparse_signal_ends_on_its_own_support():
    """dlnlab.data.synthetic(seed=2) is y = Xβ* with β* on 3 coordinates: coordinate 7, active
    on the way, is exactly 0 at the end (it had been left at −1.4e-16)."""
    X, y = synthetic(seed=2)
    rng = np.random.default_rng(2)  # synthetic's own draws, redone: X, then β*'s support
    rng.standard_normal((20, 40))
    truth = sorted(rng.choice(40, size=3, replace=False).tolist())
    path = saddle_path(X, y)
    assert 7 in path.supports()[-2]
    assert path.supports()[-1] == truth == [12, 28, 30]
    assert path.leaving[-1] == [7]
    assert path.losses[-1] == 0.0
    assert_path_properties(X, y, path)


def resolve(X, y, face):
    """The face problem solved afresh: NNLS in γ = σ ⊙ β on the face's columns (σ = face)."""
    on = np.flatnonzero(face)
    beta = np.zeros(X.shape[1])
    if len(on):
        gamma, _ = nnls(X[:, on] * face[on], y)
        beta[on] = face[on] * gamma
    return beta


def random_problems(count: int, seed: int):
    """Exactly sparse signals (ties at zero are then the rule at the end) and noisy ones."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        n = int(rng.integers(2, 15))
        d = int(rng.integers(1, 3 * n))
        noise = 0.0 if trial % 2 else float(rng.uniform(0.05, 1))
        features = "correlated" if trial % 3 == 0 else "gaussian"
        X, y = synthetic(n=n, d=d, k=min(d, int(rng.integers(1, 4))), noise=noise, seed=trial,
                         features=features, rho=0.8)
        yield X, y, noise


@pytest.mark.parametrize("seed", range(3))
def test_every_face_agrees_with_an_independent_nnls(seed):
    for X, y, _ in random_problems(60, seed):
        path = saddle_path(X, y)
        scale = np.linalg.norm(y) / np.linalg.norm(X, axis=0)  # |β_i| meaning a share 1 of ‖y‖
        for beta, face in zip(path.betas, path.faces):
            again = resolve(X, y, face)
            np.testing.assert_allclose(beta, again, rtol=1e-8, atol=1e-8 * scale.max())
            # the same support, with NNLS's own residues (if any) read as zero
            assert np.array_equal(beta != 0, np.abs(again) > 1e-8 * scale)
            on = beta != 0  # no residue on the path: every non-zero is a real share of the fit
            assert np.all(np.abs(beta[on]) > ZERO_SHARE * scale[on])
        reference = np.abs(min_l1_minimizer(X, y)) > 1e-8 * scale  # OLS has residues too
        assert path.supports()[-1] == np.flatnonzero(reference).tolist()
        for k in range(1, len(path)):  # events are the support's changes
            before, after = set(path.supports()[k - 1]), set(path.supports()[k])
            assert set(path.entering[k]) == after - before
            assert set(path.leaving[k]) == before - after


def test_the_last_loss_is_zero_exactly_when_the_data_are_interpolated():
    counts = [0, 0]
    for X, y, noise in random_problems(40, 7):
        path = saddle_path(X, y)
        n, d = X.shape
        interpolable = bool(noise == 0 or np.linalg.matrix_rank(X) == n)  # Xβ = y solvable
        counts[interpolable] += 1
        if interpolable:  # the path ends at an interpolator
            assert path.losses[-1] == 0.0
        else:  # a genuine residual is reported as it is
            r = X @ ols(X, y) - y
            assert path.losses[-1] == pytest.approx(r @ r / (2 * n), rel=1e-9)
            assert path.losses[-1] > 0
    assert min(counts) >= 5
