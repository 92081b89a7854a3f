"""The symmetric family β = w₊^L − w₋^L of any depth L ≥ 2 (docs/theory.md §2)."""

import math
import sys

import torch
from torch import nn

from dlnlab.checks import ConfigError
from dlnlab.clocks import symmetric_clock
from dlnlab.models.base import DiagonalNetwork, check_alpha, check_depth, init_shape, torch_dtype
from dlnlab.theory.flow import MirrorMap


class SymmetricNetwork(DiagonalNetwork):
    """β = w₊^L − w₋^L with w±(0) = α·a.

    Gradient flow gives, with θ = −∫∇L dτ (docs/theory.md §2):
      L = 2:  w± = α·a·exp(±2θ), T_α = log(1/α) / 2, s = (log w₊ − log w₋) / (2 log(1/α));
      L ≥ 3:  w±^(2−L) = (α·a)^(2−L) ∓ L(L−2)·θ, T_α = α^−(L−2) / (L(L−2)),
              s = ((w₋/α)^(2−L) − (w₊/α)^(2−L)) / 2.
    Both duals equal θ / T_α exactly, whatever the shape a. The α → 0 limit is Algorithm 1's
    signed saddle path, but at depth L ≥ 3 only for a uniform shape: coordinate i saturates at
    |s_i| = a_i^(2−L) (docs/theory.md §2.5), so a non-uniform shape there declares no limit.
    """

    limit = "signed"

    def __init__(self, d: int, alpha: float, depth: int = 2, shape="uniform", shape_seed: int = 0,
                 dtype: str = "float64"):
        super().__init__()
        a = power_initialisation(self, d, alpha, depth, shape, shape_seed, dtype)
        self.w_plus = nn.Parameter(self.alpha * a)
        self.w_minus = nn.Parameter(self.alpha * a)

    def beta(self) -> torch.Tensor:
        return self.w_plus**self.depth - self.w_minus**self.depth

    def time_scale(self) -> float:
        return symmetric_clock(self.alpha, self.depth)

    def dual(self) -> torch.Tensor:
        wp, wm, L = self.w_plus.detach(), self.w_minus.detach(), self.depth
        if L == 2:
            return (torch.log(wp) - torch.log(wm)) / (2 * math.log(1 / self.alpha))
        return ((wm / self.alpha) ** (2 - L) - (wp / self.alpha) ** (2 - L)) / 2

    def mirror_map(self) -> MirrorMap:
        return MirrorMap(math.log(self.alpha), depth=self.depth,
                         shape=self.shape.cpu().double().numpy())

    def power_form(self) -> tuple[str, str, int, float]:
        return "w_plus", "w_minus", self.depth, float(self.depth)

    def descend(self, h: torch.Tensor) -> None:
        """w± ← w± ∓ L·h ⊙ w±^(L−1), in place."""
        L = self.depth
        if L == 2:  # w± ← w± ∓ 2 h ⊙ w±
            self.w_plus.addcmul_(h, self.w_plus, value=-2)
            self.w_minus.addcmul_(h, self.w_minus, value=2)
        else:
            self.w_plus.addcmul_(h, self.w_plus ** (L - 1), value=-L)
            self.w_minus.addcmul_(h, self.w_minus ** (L - 1), value=L)


def power_initialisation(model: DiagonalNetwork, d: int, alpha: float, depth: int, shape,
                         shape_seed: int, dtype: str) -> torch.Tensor:
    """For networks of factors w = α·a raised to the power L (β = w₊^L − w₋^L, β = w^L): checks
    and sets `model.depth`, `model.alpha` and the buffer `shape` (a), and returns a in the run's
    dtype. A clock α^−(L−2) beyond float64 is refused; at depth L ≥ 3 a non-uniform shape has no
    Algorithm-1 limit (coordinate i saturates at a_i^(2−L)): `limit` None, with the reason."""
    model.depth = check_depth(depth)
    model.alpha = check_alpha(alpha)
    if not math.isfinite(symmetric_clock(model.alpha, depth)):
        finite = math.exp(-math.log(sys.float_info.max) / (depth - 2))  # the smallest α
        raise ConfigError(f"alpha={alpha!r} at depth={depth} gives an infinite clock "
                          f"α^−(L−2): use alpha ≥ {finite * 1.06:.2g} (the clock grows like "
                          "α^−(L−2): a moderate alpha is already small at depth ≥ 3)")
    a = torch.as_tensor(init_shape(shape, d, shape_seed),
                        dtype=torch_dtype(dtype, model.alpha if depth == 2 else None))
    model.register_buffer("shape", a)
    if depth >= 3 and not bool((a == a[0]).all()):
        model.limit = None
        model.limit_note = (f"at depth {depth} with a non-uniform shape coordinate i saturates "
                            "at a_i^(2−L), not at Algorithm 1's thresholds: no limit to compare "
                            "with (use model.shape=uniform)")
    return a
