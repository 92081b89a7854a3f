"""The exact finite-α flow (dlnlab.theory.flow) against independent computations: the residual
form of the loss."""

import math

import numpy as np
import pytest

from dlnlab.data import worked_example
from dlnlab.theory import flow, saddle_path


def residual_loss(X, y, betas):
    r = betas @ X.T - y
    return (r * r).sum(axis=-1) / (2 * len(y))


# ---- 4. losses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [math.sqrt(10)])
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
