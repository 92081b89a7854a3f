"""Models against closed forms of docs/theory.md §2: clocks, duals, beta maps, and the u²−v²
invariant."""

import math

import numpy as np
import pytest
import torch

from dlnlab.checks import ConfigError
from dlnlab.data import synthetic, worked_example
from dlnlab.models import DiagonalNetwork, SymmetricNetwork, UVNetwork

MODELS = {
    "uv": lambda d, alpha, **kw: UVNetwork(d, alpha, **kw),
    "depth2": lambda d, alpha, **kw: SymmetricNetwork(d, alpha, depth=2, **kw),
    "depth3": lambda d, alpha, **kw: SymmetricNetwork(d, alpha, depth=3, **kw),
    "depth4": lambda d, alpha, **kw: SymmetricNetwork(d, alpha, depth=4, **kw),
}


def gd(model: DiagonalNetwork, X, y, lr: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain GD written out here; returns the sums of grad L(beta_k) and of its square over the
    steps."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    total = torch.zeros(X.shape[1], dtype=X.dtype)
    squares = torch.zeros_like(total)
    with torch.no_grad():
        for _ in range(steps):
            g = X.T @ (X @ model.beta() - y) / len(y)
            total += g
            squares += g**2
            model.descend(lr * g)
    return total.numpy(), squares.numpy()


def test_clocks_are_the_closed_forms():
    assert UVNetwork(3, 1e-7).time_scale() == pytest.approx(math.log(1e7))
    assert SymmetricNetwork(3, 1e-7, depth=2).time_scale() == pytest.approx(math.log(1e7) / 2)
    assert SymmetricNetwork(3, 1e-2, depth=3).time_scale() == pytest.approx(1e2 / 3)
    assert SymmetricNetwork(3, 1e-2, depth=5).time_scale() == pytest.approx(1e6 / 15)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", ["uniform", "random"])
def test_dual_is_minus_the_integrated_gradient(name, shape):
    """s = -int_0^t grad L dr (docs/theory.md §2), through jumps and saturated coordinates.

    The worked example runs past its first jump (t1 = 2), so coordinates are O(1) and |s| ≈ 1.
    The parameters hold GD's own dual, which differs from the Riemann sum by O(lr²·g²) per step:
    for u ⊙ v, u + v is multiplied by exactly 1 − lr·g, and log(1 − x) = −x − x²/2 − ...
    """
    X, y = worked_example()
    alpha = {"uv": 1e-30, "depth2": 1e-30, "depth3": 0.05, "depth4": 0.1}[name]
    model = MODELS[name](4, alpha, shape=shape, shape_seed=3)
    lr = 1e-2 if name in ("uv", "depth2") else 2e-3
    steps = math.ceil(5.0 * model.time_scale() / lr)
    total, squares = gd(model, X, y, lr, steps)
    s_riemann = -total * lr / model.time_scale()
    assert np.abs(model.beta().detach().numpy()).max() > 0.5  # past a jump: a coordinate is O(1)
    bound = lr**2 * squares / model.time_scale()
    assert np.all(np.abs(model.dual().numpy() - s_riemann) <= bound + 1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_beta_follows_the_closed_form_map_before_the_first_jump(name):
    """While beta ≈ 0, grad L ≈ g = −Xᵀy/n is constant and everything integrates by hand.

    Flow (docs/theory.md §2), s = −t·g: uv: α² sinh(2 log(1/α) s); depth 2: 2α² sinh(2 log(1/α) s);
    depth L ≥ 3: α^L[(1−s)^(−L/(L−2)) − (1+s)^(−L/(L−2))]. GD after k steps, exactly: uv: u ± v =
    u0(1 ∓ lr·g)^k, so beta = (u0²/4)[(1−lr·g)^2k − (1+lr·g)^2k]; depth 2: w± = α(1 ∓ 2lr·g)^k. GD's
    beta is the flow's times about exp(−t·T·lr·g²): an O(lr·log(1/α)) relative gap, asserted as
    such.
    """
    X, y = synthetic(n=10, d=6, k=2, seed=1)
    alpha = {"uv": 1e-6, "depth2": 1e-6, "depth3": 1e-2, "depth4": 0.1}[name]
    model = MODELS[name](6, alpha)
    g = -X.T @ y / len(y)
    t = 0.6 / np.abs(g).max()  # 60% of the first jump time t1 = n / ‖Xᵀy‖∞
    lr = 1e-3
    k = round(t * model.time_scale() / lr)
    gd(model, X, y, lr, k)
    t = k * lr / model.time_scale()
    s = -t * g
    np.testing.assert_allclose(model.dual().numpy(), s, rtol=1e-3)
    beta = model.beta().detach().numpy()
    a, L = 2 * math.log(1 / alpha), getattr(model, "depth", 2)
    if name == "uv":
        flow = alpha**2 * np.sinh(a * s)
        np.testing.assert_allclose(
            beta, alpha**2 / 2 * ((1 - lr * g) ** (2 * k) - (1 + lr * g) ** (2 * k)), rtol=1e-3
        )
    elif L == 2:
        flow = 2 * alpha**2 * np.sinh(a * s)
        np.testing.assert_allclose(
            beta, alpha**2 * ((1 - 2 * lr * g) ** (2 * k) - (1 + 2 * lr * g) ** (2 * k)), rtol=1e-3
        )
    else:
        flow = alpha**L * ((1 - s) ** (-L / (L - 2)) - (1 + s) ** (-L / (L - 2)))
    gap = 4 * t * model.time_scale() * lr * g**2 if L == 2 else 0
    np.testing.assert_allclose(beta, flow, rtol=gap.max() + 2e-3 if L == 2 else 2e-3)


def test_uv_step_is_gd_on_u_and_v():
    """The u ⊙ v network keeps u ± v, but its step is GD on (u, v): u ← u − h v, v ← v − h u."""
    torch.manual_seed(0)
    model = UVNetwork(5, 0.3, shape="random")
    with torch.no_grad():  # as the engines call it
        model.descend(0.2 * torch.randn(5, dtype=torch.float64))  # v ≠ 0
    u, v = model.u.detach().clone(), model.v.detach().clone()
    h = 0.1 * torch.randn(5, dtype=torch.float64)
    with torch.no_grad():
        model.descend(h)
    torch.testing.assert_close(model.u.detach(), u - h * v, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(model.v.detach(), v - h * u, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(
        model.beta().detach(), (u - h * v) * (v - h * u), rtol=1e-12, atol=1e-16
    )


def test_uv_conserves_u2_minus_v2_up_to_lr_squared():
    """One GD step multiplies u² − v² by exactly 1 − lr²g² (so the drift per step is O(lr²))."""
    X, y = synthetic(n=10, d=20, k=3, seed=2)
    model = UVNetwork(20, 1e-2, shape="random")
    lr = 1e-2
    gd(model, X, y, lr, 3000)  # move into the non-trivial part of the path
    p, q = model.p.detach().clone(), model.q.detach().clone()
    g = torch.as_tensor(X.T @ (X @ model.beta().detach().numpy() - y) / len(y))
    gd(model, X, y, lr, 1)
    before, after = p * q, model.p.detach() * model.q.detach()  # u² − v² = (u + v)(u − v) = 4pq
    np.testing.assert_allclose(after.numpy(), (before * (1 - lr**2 * g**2)).numpy(), rtol=1e-9)


class AutogradUV(DiagonalNetwork):
    """A user model with no closed-form gradient: trains through autograd."""

    def __init__(self, d, alpha):
        super().__init__()
        self.alpha = alpha
        self.u = torch.nn.Parameter(torch.full((d,), math.sqrt(2) * alpha, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def beta(self):
        return self.u * self.v


@pytest.mark.parametrize("make", [lambda: SymmetricNetwork(5, 0.3, depth=2, shape="random"),
                                  lambda: SymmetricNetwork(5, 0.3, depth=3, shape="random")])
def test_closed_form_steps_equal_autograd(make):
    """Each built-in descend() is the chain rule that autograd computes for any user model."""
    torch.manual_seed(0)
    h = 0.1 * torch.randn(5, dtype=torch.float64)
    closed, auto = make(), make()
    for _ in range(3):
        with torch.no_grad():
            closed.descend(h)
            DiagonalNetwork.descend(auto, h)  # the base class's: autograd
    for c, a in zip(closed.parameters(), auto.parameters()):
        torch.testing.assert_close(c, a, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=0.0), "alpha=0.0 must be a number in (0, 1)"),
    (dict(alpha=-1e-3), "alpha=-0.001"),
    (dict(alpha=2.0), "alpha=2.0"),
    (dict(alpha=1e-3, depth=1), "depth=1 must be an integer ≥ 2"),
    (dict(alpha=1e-3, shape="gaussian"), "shape='gaussian' is unknown"),
    (dict(alpha=1e-3, shape=[1.0, -1.0, 1.0]), "must be 3 finite positive numbers"),
    (dict(alpha=1e-3, shape=[1.0, 1.0]), "must be 3 finite positive numbers"),
    (dict(alpha=1e-3, dtype="float16"), "dtype='float16' is unknown"),
    (dict(alpha=1e-200, depth=4), "infinite clock"),
])
def test_bad_model_arguments_name_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SymmetricNetwork(3, **kwargs)
