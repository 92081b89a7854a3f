"""The paper's network beta = u ⊙ v (PAPER.md §1)."""

import math

import torch
from torch import nn

from dlnlab.models.base import DiagonalNetwork, check_alpha, check_dtype, init_shape
from dlnlab.theory.flow import MirrorMap


class UVNetwork(DiagonalNetwork):
    """beta = u ⊙ v with u0 = sqrt(2)·alpha·a, v0 = 0.

    GD on (u, v) — u ← u − h ⊙ v, v ← v − h ⊙ u with h = lr·∇L(β) — is exactly multiplicative in
    u ± v: (u + v) ← (u + v)(1 − h), (u − v) ← (u − v)(1 + h). The network therefore holds u + v and
    u − v as its parameters (`u_plus_v`, `u_minus_v`; `u` and `v` are read from them): at small α one
    of the two is ~α²/|u| and would be lost to cancellation in (u, v) — float64 rounding then flips its
    sign and switches on a coordinate that should stay off. Gradient flow integrates to
    u ± v = u0·exp(±theta), theta = −∫∇L dτ, so the dual is s = ½ log((u + v)/(u − v)) / log(1/alpha),
    for any shape a, computed without cancellation.
    """

    def __init__(self, d: int, alpha: float, shape="uniform", shape_seed: int = 0, dtype: str = "float64"):
        super().__init__()
        self.alpha = check_alpha(alpha)
        a = torch.as_tensor(init_shape(shape, d, shape_seed), dtype=check_dtype(dtype, self.alpha))
        self.register_buffer("u0", math.sqrt(2) * self.alpha * a)
        self.u_plus_v = nn.Parameter(self.u0.clone())
        self.u_minus_v = nn.Parameter(self.u0.clone())

    @property
    def u(self) -> torch.Tensor:
        return (self.u_plus_v + self.u_minus_v) / 2

    @property
    def v(self) -> torch.Tensor:
        return (self.u_plus_v - self.u_minus_v) / 2

    def beta(self) -> torch.Tensor:
        p, q = self.u_plus_v, self.u_minus_v  # u v = ((u + v)² − (u − v)²) / 4
        return torch.addcmul(p * p, q, q, value=-1).mul_(0.25)

    def time_scale(self) -> float:
        return math.log(1 / self.alpha)

    def dual(self) -> torch.Tensor:
        return 0.5 * (torch.log(self.u_plus_v.detach()) - torch.log(self.u_minus_v.detach())) / self.time_scale()

    def mirror_map(self) -> MirrorMap:
        return MirrorMap(math.log(self.alpha), depth=None, shape=(self.u0 / (math.sqrt(2) * self.alpha)).cpu().numpy())

    def _descend(self, h: torch.Tensor) -> None:
        """GD on (u, v), as (u ± v) ← (u ± v)(1 ∓ h): two in-place operations."""
        self.u_plus_v.addcmul_(self.u_plus_v, h, value=-1)
        self.u_minus_v.addcmul_(self.u_minus_v, h, value=1)
