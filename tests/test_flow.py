"""The exact finite-α flow (dlnlab.theory.flow) against independent computations: the α → 0 limit
(Algorithm 1), the flow integrated in β instead of s, and the residual form of the loss; its cost
(right-hand-side evaluations) on the inputs that made it slow; its errors and its jump times."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dlnlab.checks import ConfigError
from dlnlab.data import synthetic, worked_example
from dlnlab.theory import FlowError, MirrorMap, flow, saddle_path

LOG10 = math.log(10)
FIG1 = dict(n=15, d=30, k=3, seed=11)  # conf/experiment/fig1.yaml's data
# Multi-scale data: the first jump at t = 5.6e-7 puts a coordinate at β ≈ 1e6, the second comes at
# t = 1.95 on a residual of 0.5 (seven decades below y). The flow used to take 1e4–1e5 evaluations
# (seconds) at α ≥ 1e-50 and to fail inside scipy at α ≤ 1e-100.
MULTI = (np.array([[-2.6, 0.4], [-0.6, -0.5], [-0.2, -2.0], [-0.2, -0.9]]),
         np.array([-2599996.7, -599999.8, -200000.4, -200000.3]))


def residual_loss(X, y, betas):
    r = betas @ X.T - y
    return (r * r).sum(axis=-1) / (2 * len(y))


def flow_in_beta(X, y, log10_alpha, times, levels, rtol=1e-6):
    """u ⊙ v's flow integrated in β, not in s, by Radau: dβ/dt = a·√(β² + α⁴)·Xᵀ(y − Xβ)/n with
    a = 2 log(1/α) (β = α² sinh(a s), so dβ/ds = a·√(β² + α⁴)). Exact, independent of the
    s-formulation, and fine in float64 while α⁴ is a normal number (α ≥ 1e-75).
    Returns s(times) = arcsinh(β/α²)/a and the first times the loss falls to `levels`."""
    n, d = X.shape
    a, c = -2 * log10_alpha * LOG10, 10.0 ** (2 * log10_alpha)

    def rhs(t, b):
        return a * np.hypot(b, c) * (X.T @ (y - X @ b) / n)

    def jac(t, b):
        g = X.T @ (y - X @ b) / n
        return a * (np.diag(b / np.hypot(b, c) * g) - np.hypot(b, c)[:, None] * (X.T @ X / n))

    def crossing(level):
        event = lambda t, b: residual_loss(X, y, b) - level  # noqa: E731
        event.direction = -1
        return event

    sol = solve_ivp(rhs, (0, times[-1]), np.zeros(d), method="Radau", jac=jac, rtol=rtol,
                    atol=1e-6 * c, t_eval=times, events=[crossing(v) for v in levels])
    assert sol.status == 0
    return np.arcsinh(sol.y.T / c) / a, np.array([e[0] for e in sol.t_events])


# ---- 1. float32 inputs ------------------------------------------------------------------------

def test_float32_inputs_are_computed_in_float64():
    """The overlay passes a float32 run's X, y and shape buffer: the flow is the float64 one."""
    X, y = synthetic(**FIG1)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    shape32 = np.random.default_rng(0).uniform(0.5, 1.5, 30).astype(np.float32)
    levels = saddle_path(X32, y32).jump_levels()
    f32 = flow(X32, y32, np.float32(math.log(1e-10)), np.float32([1.0, 4.0]), shape=shape32,
               levels=levels.astype(np.float32), rtol=1e-8, atol=1e-10)
    f64 = flow(X32.astype(float), y32.astype(float), float(np.float32(math.log(1e-10))), [1.0, 4.0],
               shape=shape32.astype(float), levels=levels.astype(np.float32).astype(float),
               rtol=1e-8, atol=1e-10)
    assert f32.mirror.shape.dtype == np.float64 and type(f32.mirror.log_alpha) is float
    for a in (f32.betas, f32.duals, f32.losses, f32.crossings):
        assert a.dtype == np.float64
    np.testing.assert_allclose(f32.duals, f64.duals, rtol=0, atol=1e-8)
    np.testing.assert_allclose(f32.crossings, f64.crossings, rtol=1e-8)
    assert f32.nfev == f64.nfev


def test_float32_run_overlay_costs_no_more_per_jump():
    """A float32 run's data are its float32-rounded values, which no 3-sparse β interpolates: their
    saddle path has 10 more saddles, at losses 1e-16 … 3e-18 and times up to 6e8, so the overlay
    asks for the flow up to t = 6.6e8. That used to take 539,000 evaluations (35 s; 2,236 for the
    float64 run). Now it may cost no more per jump than the float64 run's flow does."""
    X, y = synthetic(**FIG1)
    costs = []
    for XX, yy in ((X, y), (X.astype(np.float32), y.astype(np.float32))):
        path = saddle_path(XX, yy)
        horizon = max(5.0, path.times[-1] * 1.05)  # the overlay's: t_max = 5, or 1.05 t_p
        f = flow(XX, yy, math.log(1e-10), [horizon], shape=np.ones(30, np.float32),
                 levels=path.jump_levels(), dense=True, rtol=1e-8, atol=1e-10)
        assert np.isfinite(f.crossings).all()  # every jump, the 10 tiny ones included, is seen
        costs.append((horizon, len(path) - 1, f.nfev))
    (h64, jumps64, nfev64), (h32, jumps32, nfev32) = costs
    assert jumps64 == 3 and jumps32 == 13 and h32 > 1e8
    assert nfev32 / jumps32 <= nfev64 / jumps64


# ---- 2. multi-scale data, failures --------------------------------------------------------------

@pytest.mark.parametrize("log10_alpha", [-5, -20])
def test_multiscale_flow_agrees_with_the_flow_in_beta(log10_alpha):
    X, y = MULTI
    levels = saddle_path(X, y).jump_levels()
    times = np.array([1e-7, 5e-7, 1e-6, 1e-3, 0.5, 1.0, 1.9, 2.0, 3.0])
    f = flow(X, y, log10_alpha * LOG10, times, levels=levels)
    s_ref, crossings_ref = flow_in_beta(X, y, log10_alpha, times, levels)
    assert f.nfev < 2000  # was 4,161 at α = 1e-5 and 38,792 at α = 1e-20
    np.testing.assert_allclose(f.duals, s_ref, rtol=0, atol=1e-7)
    np.testing.assert_allclose(f.crossings, crossings_ref, rtol=1e-7)


def test_multiscale_flow_tends_to_the_limit_like_one_over_log_alpha():
    """At α = 1e-5 … 1e-300 the flow solves in < 2,000 evaluations (it raised at α ≤ 1e-100),
    its jump times tend to the limit's (Algorithm 1, computed independently) with relative error
    × log(1/α) the same at every α (docs/theory.md §5), and at α = 1e-300 they are within 1e-2."""
    X, y = MULTI
    path = saddle_path(X, y)
    products = []
    for log10_alpha in (-5, -20, -100, -300):
        log_inv = -log10_alpha * LOG10
        f = flow(X, y, -log_inv, [3.0], levels=path.jump_levels())
        assert f.nfev < 2000
        assert np.all(f.losses >= 0)
        products.append((f.crossings / path.times[1:] - 1) * log_inv)
    products = np.array(products)
    np.testing.assert_allclose(products, np.broadcast_to(products[-1], products.shape), rtol=0.02)
    assert np.abs(products[-1] / (300 * LOG10)).max() < 1e-2


def test_unsolvable_flow_raises_one_flow_error_with_the_time():
    X, y = worked_example()
    with pytest.raises(ConfigError, match=r"too large"):  # XᵀX would overflow: refused up front
        flow(X * 1e200, y, math.log(1e-10), [1.0])
    with pytest.raises(FlowError, match=r"max_nfev=50 .* stopped at t = \d"):
        flow(X, y, math.log(1e-30), [12.0], max_nfev=50)
    assert issubclass(FlowError, RuntimeError)  # what the overlay catches, to skip the flow


# ---- 3. times -----------------------------------------------------------------------------------

@pytest.mark.parametrize("times, match", [([], "empty"), ([np.nan], r"times\[0\] = nan"),
                                          ([1.0, np.inf], r"times\[1\] = inf"),
                                          ([-1.0], r"times\[0\] = -1.0"),
                                          ([2.0, 1.0], r"index 1 \(2.0 then 1.0\)"),
                                          ("soon", "numbers")])
def test_bad_times_are_one_config_error(times, match):
    X, y = worked_example()
    with pytest.raises(ConfigError, match=match) as info:
        flow(X, y, math.log(1e-10), times)
    assert "increasing order" in str(info.value) or "numbers" in str(info.value)


def test_times_from_zero():
    X, y = worked_example()
    path = saddle_path(X, y)
    start = flow(X, y, math.log(1e-10), [0.0], levels=path.jump_levels(), dense=True)
    np.testing.assert_array_equal(start.duals, 0)
    np.testing.assert_array_equal(start.betas, 0)
    assert start.losses[0] == pytest.approx(0.25) and start.nfev == 0
    assert np.isnan(start.crossings).all()
    np.testing.assert_array_equal(start.at(0.0)[1], 0)
    f = flow(X, y, math.log(1e-10), [0.0, 0.0, 2.0, 2.0, 5.0])
    np.testing.assert_array_equal(f.duals[:2], 0)
    np.testing.assert_array_equal(f.duals[2], f.duals[3])
    np.testing.assert_allclose(f.duals[4], flow(X, y, math.log(1e-10), [5.0]).duals[0], atol=1e-9)
    above = flow(X, y, math.log(1e-10), [0.0, 5.0], levels=[0.3, 0.25, 0.1]).crossings
    assert above[0] == above[1] == 0 and 2 < above[2] < 5  # L(0) = 0.25 is at or below 0.3, 0.25


# ---- 4. losses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [math.sqrt(10), 2.1e8])
def test_losses_are_the_residual_form_and_never_negative(scale):
    """L(0) = 2.5 and 1.1e16: the expanded quadratic βᵀGβ/2 − bᵀβ + c gave −8.9e-16 and −8.0 on
    these flows. Every loss, and the loss the crossing events see, is ‖Xβ − y‖²/(2n)."""
    X, y = worked_example()
    y = y * scale
    path = saddle_path(X, y)
    times = np.linspace(0, 2 * path.times[-1], 400)
    level = 1e-14 * path.losses[0]  # below the expanded form's rounding error, ~1e-16·L(0)
    f = flow(X, y, math.log(1e-30), times, levels=[level], dense=True)
    assert np.all(f.losses >= 0) and f.losses[-1] < level
    np.testing.assert_allclose(f.losses, residual_loss(X, y, f.betas), rtol=1e-12, atol=0)
    beta, _ = f.at(f.crossings[0])
    assert residual_loss(X, y, beta) == pytest.approx(level, rel=1e-6)


# ---- 5. jump times ------------------------------------------------------------------------------

def test_fig1_jump_times_within_3_percent_of_the_limit():
    """conf/experiment/fig1.yaml's data: u ⊙ v at α = 1e-50 (the last jump read 3.29, 8% late, with
    the old levels) and depth 3 at α = 1e-2 (3.647, 20% late)."""
    X, y = synthetic(**FIG1)
    path = saddle_path(X, y)
    for log_alpha, depth in ((-50 * LOG10, None), (math.log(1e-2), 3)):
        f = flow(X, y, log_alpha, [5.0], depth=depth, levels=path.jump_levels())
        np.testing.assert_allclose(f.crossings, path.times[1:], rtol=0.03)


def test_fig1_sweep_error_times_log_alpha_is_flat_for_every_jump():
    """(t_flow − t_limit)·log(1/α) for α = 1e-5 … 1e-100 (docs/jump-times.md's table): the first
    two jumps' products vary by ×1.0 and ×1.22 over the sweep; the last jump's (a jump to a zero
    loss) must vary no more than ×1.5 (it varied ×2.2, from 49.8 to 22.6, and was not seen at all
    at α = 1e-5 with the old levels). A C/log(1/α) error (docs/theory.md §5) gives a flat line."""
    X, y = synthetic(**FIG1)
    path = saddle_path(X, y)
    products = []
    for log10_alpha in (-5, -10, -20, -50, -100):
        f = flow(X, y, log10_alpha * LOG10, [5.0], levels=path.jump_levels())
        products.append((f.crossings - path.times[1:]) * -log10_alpha * LOG10)
    products = np.abs(np.array(products))
    spread = products.max(axis=0) / products.min(axis=0)
    assert spread[-1] < 1.5
    assert spread[-1] <= 1.5 * spread[:-1].max()


def test_every_kind_of_jump_is_marked_at_the_jump():
    """An entry with a deactivation (the worked example: coordinate 0 leaves at t = 8) and two
    coordinates entering at once: the flow's crossings at α = 1e-30 against the limit, and the
    same C/log(1/α) at α = 1e-100 (two exits at once: tests/test_theory.py DOUBLE_EXIT)."""
    X, y = worked_example()
    path = saddle_path(X, y)
    np.testing.assert_allclose(path.times[1:], [2, 8, 552 / 49], rtol=1e-14)
    errors = []
    for log10_alpha in (-30, -100):
        f = flow(X, y, log10_alpha * LOG10, [15.0], levels=path.jump_levels())
        errors.append((f.crossings - path.times[1:]) * -log10_alpha * LOG10)
        if log10_alpha == -30:
            np.testing.assert_allclose(f.crossings[:2], [2, 8], rtol=0.01)
            # the last jump's error is 10–100 times the others': its gradient is small (0.049)
            # and its coordinate's target (−10/49) below the ½ that s = −1 gives; its loss is
            # 99.6% gone by t = 11.2 < 552/49 (docs/jump-times.md)
            assert f.crossings[2] == pytest.approx(552 / 49, rel=0.06)
    np.testing.assert_allclose(errors[0], errors[1], rtol=0.02)
    with pytest.warns(UserWarning, match="together"):  # two coordinates reach ±1 at t = 1
        both = saddle_path(np.diag([1.0, 2.0]), np.array([2.0, -1.0]))
    assert both.entering[1] == [0, 1] and both.times[1] == pytest.approx(1.0)
    f = flow(np.diag([1.0, 2.0]), np.array([2.0, -1.0]), -30 * LOG10, [2.0],
             levels=both.jump_levels())
    assert f.crossings[0] == pytest.approx(1.0, rel=0.01)


def test_jump_levels_are_the_middle_of_each_drop():
    X, y = worked_example()
    path = saddle_path(X, y)
    np.testing.assert_allclose(path.jump_levels(), [(0.25 + 0.05) / 2, (0.05 + 0.005) / 2, 0.0025],
                               rtol=1e-12)
    levels = saddle_path(*synthetic(n=30, d=200, k=5, noise=0.5, seed=0)).jump_levels()
    assert np.all(np.diff(levels) < 0)
    with pytest.raises(ValueError, match="fraction"):
        path.jump_levels(1.0)


def test_mirror_map_is_finite_past_saturation():
    """Trial steps may overshoot |s| = 1 by far: β and dβ/ds stay finite (the solver rejects
    those steps) instead of overflowing into an exception inside scipy."""
    s = np.array([-50.0, -1.5, 0.0, 1.0, 1.5, 50.0])
    for mirror in (MirrorMap(-300 * LOG10), MirrorMap(-1000 * LOG10, depth=2),
                   MirrorMap(math.log(1e-2), depth=3), MirrorMap(math.log(1e-3), depth=5)):
        with np.errstate(over="raise", invalid="raise"):
            beta, slope = mirror.beta(s), mirror.dbeta_ds(s)
        assert np.all(np.isfinite(beta)) and np.all(np.isfinite(slope)) and np.all(slope >= 0)
        assert np.all(np.diff(beta) >= 0) and beta[2] == 0


@pytest.mark.parametrize("alpha, depth", [(1e-5, 3), (1e-3, 4)])
def test_deep_networks_never_cross_the_mirror_maps_pole(alpha, depth):
    """At depth L ≥ 3, β(s) has a pole at |s| = 1 (uniform shape); an earlier integrator stepped
    across it (|s| up to 8.4, NaN jump times). The flow stays inside and, α^(L−2) ≤ 1e-5 being
    small, jumps where the limit does (docs/theory.md §5.5: errors O(α^(L−2)))."""
    X, y = synthetic(n=15, d=30, k=3, seed=11)
    path = saddle_path(X, y)
    f = flow(X, y, math.log(alpha), [5.0], depth=depth, levels=path.jump_levels())
    assert np.abs(f.duals).max() <= 1 + 1e-9
    np.testing.assert_allclose(f.crossings, path.times[1:], rtol=1e-3)
