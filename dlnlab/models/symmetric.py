"""The symmetric family beta = w₊^L − w₋^L of any depth L ≥ 2 (PAPER.md §2)."""

import math

import torch
from torch import nn

from dlnlab.checks import ConfigError
from dlnlab.models.base import DiagonalNetwork, check_alpha, check_dtype, init_shape
from dlnlab.theory.flow import MirrorMap


class SymmetricNetwork(DiagonalNetwork):
    """beta = w₊^L − w₋^L with w±(0) = alpha·a.

    Gradient flow gives, with theta = -int grad L dtau (PAPER.md §2, derived):
      L = 2:  w± = alpha·a·exp(±2 theta), T_alpha = log(1/alpha) / 2,
              s = (log w₊ − log w₋) / (2 log(1/alpha));
      L ≥ 3:  w±^(2−L) = (alpha·a)^(2−L) ∓ L(L−2)·theta, T_alpha = alpha^−(L−2) / (L(L−2)),
              s = ((w₋/alpha)^(2−L) − (w₊/alpha)^(2−L)) / 2.
    Both duals equal theta / T_alpha exactly, whatever the shape a.
    """

    def __init__(self, d: int, alpha: float, depth: int = 2, shape="uniform", shape_seed: int = 0,
                 dtype: str = "float64"):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ConfigError(f"depth={depth!r} must be an integer ≥ 2 (2 is the shallow network, e.g. depth=3)")
        self.alpha = check_alpha(alpha)
        self.depth = depth
        a = torch.as_tensor(init_shape(shape, d, shape_seed), dtype=check_dtype(dtype, self.alpha if depth == 2 else None))
        self.w_plus = nn.Parameter(self.alpha * a)
        self.w_minus = nn.Parameter(self.alpha * a)
        self.register_buffer("shape", a)
        if not math.isfinite(self.time_scale()):
            raise ConfigError(f"alpha={alpha!r} at depth={depth} gives an infinite clock alpha^-(L-2): use a larger alpha "
                              "(depth ≥ 3 converges polynomially in alpha, so alpha=1e-3 is already small)")

    def beta(self) -> torch.Tensor:
        return self.w_plus**self.depth - self.w_minus**self.depth

    def time_scale(self) -> float:
        L = self.depth
        if L == 2:
            return math.log(1 / self.alpha) / 2
        try:
            return self.alpha ** (-(L - 2)) / (L * (L - 2))
        except OverflowError:
            return math.inf

    def dual(self) -> torch.Tensor:
        wp, wm, L = self.w_plus.detach(), self.w_minus.detach(), self.depth
        if L == 2:
            return (torch.log(wp) - torch.log(wm)) / (2 * math.log(1 / self.alpha))
        return ((wm / self.alpha) ** (2 - L) - (wp / self.alpha) ** (2 - L)) / 2

    def mirror_map(self) -> MirrorMap:
        return MirrorMap(math.log(self.alpha), depth=self.depth, shape=self.shape.cpu().numpy())

    def power_form(self) -> tuple[str, str, int, float]:
        return "w_plus", "w_minus", self.depth, float(self.depth)

    def _descend(self, h: torch.Tensor) -> None:
        """w± ← w± ∓ L h ⊙ w±^(L−1), in place."""
        L = self.depth
        if L == 2:  # w± ← w± ∓ 2 h ⊙ w±
            self.w_plus.addcmul_(h, self.w_plus, value=-2)
            self.w_minus.addcmul_(h, self.w_minus, value=2)
        else:
            self.w_plus.addcmul_(h, self.w_plus ** (L - 1), value=-L)
            self.w_minus.addcmul_(h, self.w_minus ** (L - 1), value=L)
