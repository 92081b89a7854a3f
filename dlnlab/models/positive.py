"""The non-negative network β = w^L of any depth L ≥ 2 (docs/nonnegative.md §1–2)."""

import math

import torch
from torch import nn

from dlnlab.clocks import symmetric_clock
from dlnlab.models.base import DiagonalNetwork
from dlnlab.models.symmetric import power_initialisation
from dlnlab.theory.flow import MirrorMap


class PositiveNetwork(DiagonalNetwork):
    """β = w^L with w(0) = α·a: every coordinate stays ≥ 0 (w is multiplied by a positive factor
    at every small step). A product of L positive factors with a common initialisation is the
    same network on a clock L times slower (docs/nonnegative.md §1).

    Gradient flow gives, with θ = −∫∇L dτ (docs/nonnegative.md §2):
      L = 2:  w = α·a·exp(2θ), T_α = log(1/α) / 2, β = a²·α^(2(1−s)),
              s = log(w/(α·a)) / log(1/α);
      L ≥ 3:  w^(2−L) = (α·a)^(2−L) − L(L−2)·θ, T_α = α^−(L−2) / (L(L−2)),
              β = α^L (a^(2−L) − s)^(−L/(L−2)), s = a^(2−L) − (w/α)^(2−L).
    Both duals equal θ / T_α exactly, whatever the shape a. Its α → 0 limit is
    `saddle_path(X, y, kind="nonnegative")` (thresholds s_i = 1: at depth L ≥ 3 this needs the
    uniform shape, since coordinate i saturates at a_i^(2−L)).

    In float64 w = a·α^(1−s) underflows once the dual of a coordinate that keeps a negative
    correlation falls below about 1 − 308/log10(1/α) (−1 at α = 1e-154): w then reads 0, stays
    0, and its dual is −∞.
    """

    def __init__(self, d: int, alpha: float, depth: int = 2, shape="uniform", shape_seed: int = 0,
                 dtype: str = "float64"):
        super().__init__()
        a = power_initialisation(self, d, alpha, depth, shape, shape_seed, dtype)
        self.w = nn.Parameter(self.alpha * a)

    limit = "nonnegative"

    def beta(self) -> torch.Tensor:
        return self.w**self.depth

    def time_scale(self) -> float:
        return symmetric_clock(self.alpha, self.depth)  # the clock of w₊^L − w₋^L

    def dual(self) -> torch.Tensor:
        w, L = self.w.detach(), self.depth
        if L == 2:  # log w − log(α a), in logs: α a alone may be tiny, w/α would not be
            return (torch.log(w) - torch.log(self.shape) - math.log(self.alpha)) / \
                math.log(1 / self.alpha)
        return self.shape ** (2 - L) - (w / self.alpha) ** (2 - L)

    def mirror_map(self) -> MirrorMap:
        return MirrorMap(math.log(self.alpha), depth=self.depth,
                         shape=self.shape.cpu().double().numpy(), nonnegative=True)

    def descend(self, h: torch.Tensor) -> None:
        """w ← w − L h ⊙ w^(L−1), in place."""
        L = self.depth
        if L == 2:  # w ← w − 2 h ⊙ w
            self.w.addcmul_(h, self.w, value=-2)
        else:
            self.w.addcmul_(h, self.w ** (L - 1), value=-L)
