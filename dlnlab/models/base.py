"""The interface every diagonal network shares (DESIGN.md, "Model").

A model is an `nn.Module` whose `beta()` is the effective linear predictor, so that the
network's output is `X @ beta()` and its loss is L(beta) (PAPER.md §1). Models that also
give their clock `time_scale()` (T_alpha) and their dual variable `dual()` (s, PAPER.md §2)
are compared against the theory with no further work.
"""

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dlnlab.checks import ConfigError

DTYPES = {"float64": torch.float64, "float32": torch.float32}
# The smallest α each dtype holds: at saturation u − v ∝ α² (w₋ likewise), which must stay a normal
# number (PAPER.md §4: float64 to about 1e-150, float32 to about 1e-18).
SMALLEST_ALPHA = {torch.float64: 1e-150, torch.float32: 1e-18}


def init_shape(shape, d: int, seed: int = 0) -> np.ndarray:
    """The initialisation shape a (alpha_i = alpha * a_i, PAPER.md §2), as a positive vector.

    `shape` is "uniform" (all ones), "random" (uniform on [0.5, 1.5], from `seed`), or an
    explicit sequence of d positive numbers.
    """
    if isinstance(shape, str):
        if shape == "uniform":
            return np.ones(d)
        if shape == "random":
            return np.random.default_rng(seed).uniform(0.5, 1.5, size=d)
        raise ConfigError(f"shape={shape!r} is unknown: use 'uniform', 'random' or a list of {d} positive numbers")
    if not isinstance(shape, Sequence):
        raise ConfigError(f"shape={shape!r} is neither a name nor a list: use 'uniform', 'random' or a list")
    a = np.asarray(list(shape), dtype=float)
    if a.shape != (d,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ConfigError(f"shape={list(shape)!r} must be {d} finite positive numbers, one per coordinate (d={d})")
    return a


def check_alpha(alpha) -> float:
    """alpha as a float in (0, 1): the theory is about alpha -> 0, and log(1/alpha) must be > 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1 or math.isnan(alpha):
        raise ConfigError(f"alpha={alpha!r} must be a number in (0, 1), the initialisation scale (e.g. alpha=1e-10)")
    return float(alpha)


def check_dtype(dtype: str, alpha: float | None = None) -> torch.dtype:
    """The torch dtype named `dtype`; with `alpha`, also that this dtype can represent the run at that α."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is unknown: use 'float64' (default) or 'float32'")
    smallest = SMALLEST_ALPHA[DTYPES[dtype]]
    if alpha is not None and alpha < smallest:
        fix = "use dtype=float64" if dtype == "float32" else "use dlnlab.theory.flow, which takes log α,"
        raise ConfigError(f"alpha={alpha!r} is too small for {dtype}, whose smallest safe α is {smallest:g} "
                          f"(u − v ∝ α² underflows): {fix} or alpha ≥ {smallest:g}")
    return DTYPES[dtype]


class DiagonalNetwork(nn.Module):
    """Base class: a linear predictor beta() built from parameters; forward is X @ beta().

    Subclasses implement `beta()`; for the theory overlay also `time_scale()` and `dual()`.
    `descend(h)` takes one gradient step given h = lr · grad L(beta): each parameter moves by
    −(dβ/dθ)ᵀ h. The default uses autograd (a vector-Jacobian product, `param_grads`), so any user
    model trains; the built-in models override it with their closed forms, in place, in a few tensor
    operations (small problems are bound by per-operation overhead).
    """

    def beta(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.beta()

    def time_scale(self) -> float:
        """The clock T_alpha: accelerated time t = tau / T_alpha (PAPER.md §2).

        A model without a known clock runs on gradient-flow time itself (T = 1, t = tau).
        """
        return 1.0

    def dual(self) -> torch.Tensor | None:
        """The dual variable s = -int_0^t grad L(beta(r)) dr from the parameters; None if unknown."""
        return None

    def has_clock(self) -> bool:
        """Whether the model defines its own clock (so accelerated time, and the limit, mean something)."""
        return type(self).time_scale is not DiagonalNetwork.time_scale

    def mirror_map(self):
        """The theory's β(s) for this model (dlnlab.theory.MirrorMap), for the exact finite-α flow; None if unknown."""
        return None

    def power_form(self) -> tuple[str, str, int, float] | None:
        """(a, b, L, c): the names of parameters a, b with β = a^L − b^L whose GD step is
        a ← a − c·h·a^(L−1), b ← b + c·h·b^(L−1); the fused CPU engine (dlnlab.kernel) steps such
        models in one compiled loop. None (the default): tensor operations, as `_descend` says."""
        return None

    def param_grads(self, grad_beta: torch.Tensor) -> list[torch.Tensor]:
        """d/dtheta L(beta(theta)) for each parameter, given grad_beta = grad L(beta), by autograd."""
        params = [p for p in self.parameters()]
        with torch.enable_grad():
            return list(torch.autograd.grad(self.beta(), params, grad_outputs=grad_beta))

    def descend(self, h: torch.Tensor) -> None:
        """One GD step in place, given h = lr · grad L(beta): theta ← theta − (dβ/dθ)ᵀ h."""
        with torch.no_grad():
            self._descend(h)

    def _descend(self, h: torch.Tensor) -> None:
        """`descend` for callers already under torch.no_grad() (the training loop): no context per step."""
        for p, dp in zip(self.parameters(), self.param_grads(h)):
            p.sub_(dp)


def tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers by dotted name."""
    return dict(model.named_parameters()) | dict(model.named_buffers())


def rebind(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Make the parameter (or buffer) `name` of model the tensor `value`, shared, not copied."""
    prefix, _, leaf = name.rpartition(".")
    owner = model.get_submodule(prefix)
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(value.detach(), requires_grad=owner._parameters[leaf].requires_grad)
    else:
        owner._buffers[leaf] = value


def with_tensors(model: nn.Module, values: dict[str, torch.Tensor]) -> nn.Module:
    """A module of model's class and attributes whose tensors named in `values` are those (shared), the
    others model's own. Given parameters stacked on a leading axis (records, replicas), a diagonal
    network's beta() and dual(), elementwise in its parameters, then act row by row."""
    view = copy.deepcopy(model, memo={id(t): t for t in tensors(model).values()})  # the structure only
    for name, value in values.items():
        rebind(view, name, value)
    return view
