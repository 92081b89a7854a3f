"""The paper's network beta = u ⊙ v (PAPER.md §1)."""

import math

import torch
from torch import nn

from dlnlab.theory.flow import MirrorMap
from dlnlab.models.base import DiagonalNetwork, check_alpha, check_dtype, init_shape


class UVNetwork(DiagonalNetwork):
    """beta = u ⊙ v with u0 = sqrt(2)·alpha·a, v0 = 0, so that u² − v² = 2 alpha² a² is conserved.

    Gradient flow integrates to u ± v = u0·exp(±theta) with theta = -int grad L dtau, so the dual is
    s = theta / T_alpha = log((u + v) / u0) / log(1/alpha) = log(u0 / (u − v)) / log(1/alpha), for any
    shape a. `dual()` uses whichever of u ± v is the large one: the other is ~alpha²/|u| and is lost to
    cancellation once β is O(1) (GD keeps these identities too: u ± v is multiplied by 1 ∓ lr·g).
    """

    def __init__(self, d: int, alpha: float, shape="uniform", shape_seed: int = 0, dtype: str = "float64"):
        super().__init__()
        self.alpha = check_alpha(alpha)
        a = torch.as_tensor(init_shape(shape, d, shape_seed), dtype=check_dtype(dtype))
        self.u = nn.Parameter(math.sqrt(2) * self.alpha * a)
        self.v = nn.Parameter(torch.zeros_like(a))
        self.register_buffer("u0", self.u.detach().clone())

    def beta(self) -> torch.Tensor:
        return self.u * self.v

    def time_scale(self) -> float:
        return math.log(1 / self.alpha)

    def dual(self) -> torch.Tensor:
        u, v, u0 = self.u.detach(), self.v.detach(), self.u0
        theta = torch.where(v >= 0, torch.log(u + v) - torch.log(u0), torch.log(u0) - torch.log(u - v))
        return theta / self.time_scale()

    def mirror_map(self) -> MirrorMap:
        return MirrorMap(math.log(self.alpha), depth=None, shape=(self.u0 / (math.sqrt(2) * self.alpha)).cpu().numpy())

    def _descend(self, h: torch.Tensor) -> None:
        """u ← u − h ⊙ v, v ← v − h ⊙ u (simultaneously), in three in-place operations."""
        step_u = h * self.v
        self.v.addcmul_(h, self.u, value=-1)
        self.u.sub_(step_u)
