"""The model contract: what a diagonal network gives (β) and may give (docs/design.md, "Models").

A model is an `nn.Module` whose `beta()` is the effective linear predictor: the network's output is
`X @ beta()` and its loss is L(β) (docs/theory.md §1.1). That is all a new model needs: it then
trains by GD or SGD through autograd, alone or as replicas. dlnlab builds it as
`Model(d=<the data's dimension>, **<its YAML's keys>)`. Each optional hook makes the framework
do more with it; without it:

- `descend(h)`: its closed-form step (a few tensor operations); without, autograd's vector-Jacobian
  product.
- `power_form()`: the fused compiled CPU engine (dlnlab/kernel.py); without, the torch engine.
- `time_scale()`: accelerated time t = τ / T_α, and run.t_max in it; without, t is gradient-flow
  time τ (T = 1) and there is no theory to compare with.
- `dual()`: s(t) logged and drawn against the limit's; without, no dual scalars or figure.
- `limit` ("signed" or "nonnegative"): the α → 0 saddle path it follows, overlaid; without (None),
  no limit, and one line says so.
- `mirror_map()`: the exact finite-α flow, overlaid; without, no flow curves.
- an attribute `alpha`: reported in summary.json and the sweep tables; without, null there.
"""

import abc

import torch
from torch import nn

from dlnlab.checks import check_alpha, check_depth, check_dtype, init_shape  # noqa: F401 (exported)

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def torch_dtype(dtype: str, alpha: float | None = None) -> torch.dtype:
    """The torch dtype named `dtype`, checked (dlnlab.checks.check_dtype)."""
    return DTYPES[check_dtype(dtype, alpha)]


class DiagonalNetwork(nn.Module, abc.ABC):
    """A linear predictor β = beta() built from parameters; forward is X @ beta().

    Subclasses implement `beta()` and whichever optional hooks they can (the table in this module's
    docstring). Replicas stack every parameter and buffer on a leading axis (dlnlab.stack): a model
    whose `beta()`, `descend()` and `dual()` act row by row on stacked tensors (every diagonal
    network written with elementwise operations does) runs them directly; any other, through
    torch.func.
    """

    limit: str | None = None  # "signed" (β = u ⊙ v, w₊^L − w₋^L), "nonnegative" (β = w^L), or None
    # (a model that sets None for a reason may say it in `limit_note`: the run prints it)

    @abc.abstractmethod
    def beta(self) -> torch.Tensor:
        """The effective linear predictor β (d,), differentiable in the parameters."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.beta()

    def time_scale(self) -> float | None:
        """The clock T_α: accelerated time t = τ / T_α (docs/theory.md §2.1); None: t = τ."""
        return None

    def dual(self) -> torch.Tensor | None:
        """The dual variable s = −∫₀ᵗ ∇L(β(r)) dr read from the parameters (docs/theory.md §2);
        None if the model does not know it."""
        return None

    def mirror_map(self):
        """β(s) for the exact finite-α flow (a dlnlab.theory.MirrorMap); None if unknown."""
        return None

    def power_form(self) -> tuple[str, str, int, float] | None:
        """(a, b, L, c): the names of parameters a, b with β = a^L − b^L whose GD step is
        a ← a − c·h·a^(L−1), b ← b + c·h·b^(L−1) (docs/theory.md §2): the fused CPU engine
        (dlnlab/kernel.py) steps such models in one compiled loop. None: not of that form."""
        return None

    def descend(self, h: torch.Tensor) -> None:
        """One GD step in place, given h = lr·∇L(β): θ ← θ − (∂β/∂θ)ᵀ h.

        Called by the engines under torch.no_grad(). This default differentiates `beta()` (a
        vector-Jacobian product), so any model trains; override it with the closed form where there
        is one (a few in-place tensor operations: small problems are bound by per-operation
        cost)."""
        params = list(self.parameters())
        with torch.enable_grad():
            grads = torch.autograd.grad(self.beta(), params, grad_outputs=h)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(g)
