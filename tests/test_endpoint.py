"""hyperbolic_minimizer and effective_alpha (docs/large-steps.md) against independent computations:
the exact finite-α flow, GD and SGD written out here on (p, q), the dlnlab models' own steps, the
minimum-ℓ1 linear program, OLS, and the optimality conditions of the problem."""

import numpy as np
import pytest
import torch

from dlnlab.checks import ConfigError
from dlnlab.data import synthetic, worked_example
from dlnlab.models import SymmetricNetwork, UVNetwork
from dlnlab.theory import effective_alpha, flow, hyperbolic_minimizer, min_l1_minimizer, ols


def _lowrank():
    """Rank 4 < n = 10 < d = 12: X is rank-deficient and y is not in range(X)."""
    rng = np.random.default_rng(7)
    return rng.standard_normal((10, 4)) @ rng.standard_normal((4, 12)), rng.standard_normal(10)


PROBLEMS = {
    "worked": worked_example,  # docs/theory.md §3
    "noisy": lambda: synthetic(n=10, d=30, k=3, noise=0.5, seed=1),
    "noisy8": lambda: synthetic(n=8, d=24, k=2, noise=0.3, seed=5),
    "lowrank": _lowrank,
}


def excess_loss(X, y, beta) -> float:
    """L(β) − min L = ‖X(β − β_ols)‖²/(2n), without the cancellation of L(β) − L(β_ols)."""
    r = X @ (beta - ols(X, y))
    return r @ r / (2 * len(y))


# (a) At constant α the prediction is the exact flow's end point.

@pytest.mark.parametrize("alpha", [1e-1, 1e-2, 1e-5])
@pytest.mark.parametrize("name", ["worked", "noisy", "lowrank"])
def test_the_flow_ends_at_the_prediction(name, alpha):
    """The flow's β stays on {α² sinh(Xᵀλ)}, which meets {Xβ = ŷ} in one point: once the loss
    has converged, the flow's β is the end point (docs/theory.md §4)."""
    X, y = PROBLEMS[name]()
    end = flow(X, y, np.log(alpha), times=[3000.0]).betas[-1]
    assert excess_loss(X, y, end) <= 1e-26
    np.testing.assert_allclose(hyperbolic_minimizer(X, y, alpha), end, rtol=0,
                               atol=1e-9 * max(1.0, np.abs(end).max()))


def test_alpha_per_coordinate_and_the_symmetric_network_against_the_flow():
    """α_i over four decades (a shape a), and w₊² − w₋², whose end point is the u ⊙ v one at the
    scale effective_alpha(w₊(0), w₋(0)) = √2·α·a (docs/large-steps.md §2)."""
    X, y = PROBLEMS["noisy"]()
    a = 10 ** np.random.default_rng(1).uniform(-4, 0, X.shape[1])
    uv = flow(X, y, np.log(0.1), times=[3000.0], shape=a).betas[-1]
    p0 = q0 = 0.1 * a / np.sqrt(2)  # u0 = √2·α·a, v0 = 0
    sym = flow(X, y, np.log(0.01), times=[3000.0], depth=2, shape=a).betas[-1]
    w0 = 0.01 * a  # w±(0) = α·a
    for end, alpha in ((uv, effective_alpha(p0, q0)), (sym, effective_alpha(w0, w0))):
        assert excess_loss(X, y, end) <= 1e-23  # the flow (LSODA) has converged
        np.testing.assert_allclose(hyperbolic_minimizer(X, y, alpha), end, rtol=0,
                                   atol=1e-9 * np.abs(end).max())


@pytest.mark.parametrize("seed", range(6))
def test_optimality_conditions(seed):
    """The minimiser is characterised by Xᵀ(Xβ − y) = 0 and arcsinh(β/α²) − offset ∈ range(Xᵀ)
    (φ_α is strictly convex): checked on rank-deficient X, α over six decades, with offsets."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(3, 12)), int(rng.integers(12, 40))
    rank = int(rng.integers(1, n + 1))
    X = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    y = rng.standard_normal(n)  # not in range(X) when rank < n
    alpha = 10 ** rng.uniform(-6, 0, d)
    offset = 0.5 * rng.standard_normal(d) if seed % 2 else np.zeros(d)
    beta = hyperbolic_minimizer(X, y, alpha, offset=offset if seed % 2 else None)
    assert np.abs(X.T @ (X @ beta - y)).max() <= 1e-10 * np.abs(X.T @ y).max()
    row_space = np.linalg.svd(X)[2][:rank]
    z = np.arcsinh(beta / alpha**2) - offset
    assert np.linalg.norm(z - row_space.T @ (row_space @ z)) <= 1e-9 * max(1.0, np.linalg.norm(z))


# (b) Large-step GD and SGD end where α_eff says; (c) the identity 2pq = α² Π(1 − γ²g²).

def descend(X, y, alphas, steps, batches=None, seed=0, max_steps=200_000):
    """GD (batches None) or SGD (one batch of `batches`, drawn at random, per step) on (p, q) from
    p = q = α/√2, written out: g = ∇L_B(p² − q²), p ← p(1 − γg), q ← q(1 + γg). One run per
    (α, γ) pair, all at once, until every residual ‖Xβ − y‖∞ ≤ 1e-12‖y‖∞ (checked every 50 steps).
    Returns p, q, max_k ‖γ g_k‖∞, ρ = −2 Σ_k (artanh(γ g_k) − γ g_k) (NaN once |γ g| ≥ 1), and
    the final residuals."""
    n, d = X.shape
    alphas, steps = np.asarray(alphas, float)[:, None], np.asarray(steps, float)[:, None]
    p = np.repeat(alphas / np.sqrt(2), d, axis=1)
    q = p.copy()
    rng = np.random.default_rng(seed)
    largest, rho = np.zeros(len(alphas)), np.zeros_like(p)
    for k in range(max_steps):
        r = (p * p - q * q) @ X.T - y
        if k % 50 == 0 and np.abs(r).max() <= 1e-12 * np.abs(y).max():
            break
        B = slice(None) if batches is None else batches[rng.integers(len(batches))]
        h = steps * (r[:, B] @ X[B] / len(X[B]))
        largest = np.maximum(largest, np.abs(h).max(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            rho -= 2 * (np.arctanh(h) - h)
        p *= 1 - h
        q *= 1 + h
    return p, q, largest, rho, np.abs((p * p - q * q) @ X.T - y).max(axis=1)


def stable_step(X, y, alpha, batches=None) -> float:
    """The largest stable step along the exact flow at α: 2 / the largest sharpness, over the flow
    (t ≤ 100) and over the batches, of λ_max(2 D^½ X_BᵀX_B D^½ / |B|), D = p² + q² = sqrt(β² + α⁴).
    At a fixed point, p ← p(1 − γg_B), q ← q(1 + γg_B) has Jacobian I − γ·K(2X_BᵀX_B/|B|)Kᵀ,
    K = [diag p; −diag q]; its non-trivial eigenvalues are those of D^½(2X_BᵀX_B/|B|)D^½."""
    batches = [np.arange(len(y))] if batches is None else batches
    largest = 0.0
    for beta in flow(X, y, np.log(alpha), times=np.linspace(0, 100, 201)).betas:
        root = np.sqrt(np.sqrt(beta**2 + alpha**4))
        for B in batches:
            XB = X[B] * root
            largest = max(largest, 2 * np.linalg.eigvalsh(XB.T @ XB / len(B))[-1])
    return 2 / largest


@pytest.mark.slow
@pytest.mark.parametrize("name,kind,smallest", [("noisy", "GD", 0.05), ("noisy8", "GD", 0.05),
                                                ("noisy8", "SGD", 0.1)])
def test_large_steps_end_where_effective_alpha_says(name, kind, smallest):
    """docs/large-steps.md §3–§5. Exactly: the run ends at argmin φ_{α_eff} − ρᵀβ over the
    interpolators, at every step that keeps |γ g| < 1, up to 90% of the stable limit. The α_eff
    prediction drops ρ = O(Σ|γg|³): at small steps it is ≥ 10× closer than the nominal α's."""
    X, y = PROBLEMS[name]()
    batches = None if kind == "GD" else [np.array([i]) for i in range(len(y))]  # SGD: batch 1
    fractions = (smallest, 0.3, 0.6, 0.9)
    runs = [(alpha, f, f * stable_step(X, y, alpha, batches))
            for alpha in (0.1, 0.01) for f in fractions]
    p, q, largest, rho, residual = descend(X, y, [r[0] for r in runs], [r[2] for r in runs],
                                           batches)
    checked = 0
    for i, (alpha, fraction, _) in enumerate(runs):
        if largest[i] >= 1:  # a sign flipped: outside the theory (docs/large-steps.md §4)
            assert fraction >= 0.9
            continue
        checked += 1
        assert residual[i] <= 1e-12 * np.abs(y).max()
        beta = p[i] ** 2 - q[i] ** 2
        a_eff = effective_alpha(p[i], q[i])
        exact = hyperbolic_minimizer(X, y, a_eff, offset=rho[i])
        np.testing.assert_allclose(beta, exact, rtol=0, atol=1e-9 * np.abs(beta).max())
        if fraction == smallest:
            nominal = np.abs(beta - hyperbolic_minimizer(X, y, alpha)).max()
            predicted = np.abs(beta - hyperbolic_minimizer(X, y, a_eff)).max()
            assert largest[i] <= 0.15 and predicted <= nominal / 10
    assert checked >= 6


@pytest.mark.parametrize("make,factor", [
    (lambda d: UVNetwork(d, 0.1, shape="random"), 1),
    (lambda d: SymmetricNetwork(d, 0.1, depth=2, shape="random"), 4),
])
def test_effective_alpha_along_dlnlab_runs(make, factor):
    """2pq = α²a² Π(1 − γ²g²) for u ⊙ v and 2w₊w₋ = 2α²a² Π(1 − 4γ²g²) for w₊² − w₋², to rounding,
    along large-step runs of the models' own descend() (docs/large-steps.md §2)."""
    X, y = PROBLEMS["noisy8"]()
    model = make(X.shape[1])
    first, second = model.power_form()[:2]

    def read():
        return effective_alpha(*(getattr(model, name).detach().numpy() for name in (first, second)))

    start = read()
    gamma = 0.6 / np.sqrt(factor) / np.abs(X.T @ y / len(y)).max()  # |√factor·γ g| = 0.6 at step 1
    log_product = np.zeros(X.shape[1])
    for k in range(1, 2001):
        g = X.T @ (X @ model.beta().detach().numpy() - y) / len(y)
        log_product += np.log1p(-factor * gamma**2 * g**2)
        with torch.no_grad():  # as the engines call it
            model.descend(torch.as_tensor(gamma * g))
        if k % 500 == 0:
            np.testing.assert_allclose(read(), start * np.exp(log_product / 2), rtol=1e-12)
    assert (read() / start).min() < 0.8  # the steps did shrink α_eff


def test_a_sign_flip_has_no_effective_alpha():
    model = UVNetwork(3, 0.1)
    with torch.no_grad():
        model.descend(torch.tensor([1.5, 0.2, -0.3], dtype=torch.float64))  # |γ g_0| ≥ 1: p_0 < 0
    with pytest.raises(ConfigError, match="flipped a sign"):
        effective_alpha(model.p.detach().numpy(), model.q.detach().numpy())


# (d) Small α: the minimum-ℓ1 interpolator.

@pytest.mark.parametrize("seed", range(3))
def test_small_alpha_tends_to_the_min_l1_interpolator(seed):
    X, y = synthetic(n=20, d=40, k=3, seed=seed)
    l1 = min_l1_minimizer(X, y)
    assert np.abs(hyperbolic_minimizer(X, y, 1e-2) - l1).max() > 5e-3
    for kwargs in ({"alpha": 1e-300}, {"log_alpha": -1e4}):  # the second is α ≈ 1e-4343
        np.testing.assert_allclose(hyperbolic_minimizer(X, y, **kwargs), l1, rtol=0, atol=1e-9)


def test_worked_example_end_points():
    """docs/theory.md §4: α = 1e-4 ends near (0.33, 0, 0.96, −0.37); α = 1e-30 within 1e-4 of the
    minimum-ℓ1 interpolator (0, 0, 10/7, −10/49)."""
    X, y = worked_example()
    np.testing.assert_allclose(hyperbolic_minimizer(X, y, 1e-4), [0.33, 0, 0.96, -0.37],
                               atol=0.01)
    np.testing.assert_allclose(hyperbolic_minimizer(X, y, 1e-30), [0, 0, 10 / 7, -10 / 49],
                               atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_alpha_over_thousands_of_decades_tends_to_the_weighted_l1_interpolator(seed):
    """log α_i = −κ w_i: as κ → ∞, φ_α/(2κ) → Σ w_i |β_i|, so the limit is the weighted ℓ1
    interpolator, min_l1_minimizer(X / w, y) / w."""
    X, y = synthetic(n=20, d=40, k=3, noise=0.1, seed=seed)
    w = np.random.default_rng(seed).uniform(0.5, 1.0, 40)
    weighted = min_l1_minimizer(X / w, y) / w
    assert np.abs(weighted - min_l1_minimizer(X, y)).max() > 1e-3
    beta = hyperbolic_minimizer(X, y, log_alpha=-3000 * np.log(10) * w)  # α_i: 1e-1500 … 1e-3000
    np.testing.assert_allclose(beta, weighted, rtol=0, atol=1e-9)


# (e) Full column rank: OLS; no information at all: the offset's point.

@pytest.mark.parametrize("kwargs", [
    {"alpha": 0.5}, {"alpha": 1e-300}, {"log_alpha": -1e5},
    {"alpha": np.logspace(-1, -300, 10), "offset": np.linspace(-2, 2, 10)},
])
def test_full_column_rank_gives_ols(kwargs):
    X, y = synthetic(n=30, d=10, k=3, noise=0.5, seed=1)
    np.testing.assert_allclose(hyperbolic_minimizer(X, y, **kwargs), ols(X, y), rtol=0, atol=1e-12)


def test_zero_data_gives_the_offsets_point():
    """X = 0: every β minimises L, so the answer is argmin φ_α − offsetᵀβ, β = α² sinh(offset)."""
    alpha, offset = np.array([0.5, 1e-3, 2.0]), np.array([0.3, -1.0, 0.0])
    X, y = np.zeros((4, 3)), np.ones(4)
    np.testing.assert_allclose(hyperbolic_minimizer(X, y, alpha, offset=offset),
                               alpha**2 * np.sinh(offset), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(hyperbolic_minimizer(X, y, alpha), 0)


# (f) Bad input.

@pytest.mark.parametrize("kwargs,message", [
    ({"X": [[1.0, np.nan]]}, "NaN"),
    ({"y": [1.0, 2.0]}, "rows"),
    ({"alpha": 0.0}, "positive"),
    ({"alpha": [0.1, -1.0]}, "positive"),
    ({"alpha": [0.1, 0.1, 0.1]}, "one per"),
    ({"alpha": None}, "exactly one"),
    ({"log_alpha": -3.0}, "exactly one"),
    ({"alpha": None, "log_alpha": np.inf}, "non-finite"),
    ({"offset": [0.0, np.nan]}, "non-finite"),
    ({"rtol": 0.0}, "rtol"),
])
def test_bad_input_is_a_config_error(kwargs, message):
    args = {"X": [[1.0, 2.0]], "y": [1.0], "alpha": 0.1} | kwargs
    with pytest.raises(ConfigError, match=message):
        hyperbolic_minimizer(args.pop("X"), args.pop("y"), **args)


def test_bad_factors_are_a_config_error():
    with pytest.raises(ConfigError, match="shapes"):
        effective_alpha(np.ones(3), np.ones(2))
    with pytest.raises(ConfigError, match="flipped a sign"):
        effective_alpha([1.0, 0.0], [1.0, 1.0])


def test_a_failed_solve_says_how_far_it_got():
    X, y = synthetic(n=20, d=40, k=3, seed=0)
    with pytest.raises(RuntimeError, match=r"Newton solve failed .* ‖Vᵀβ − b‖ = "):
        hyperbolic_minimizer(X, y, 1e-30, max_newton=2)
