"""The paper's network β = u ⊙ v (docs/theory.md §1)."""

import math

import torch
from torch import nn

from dlnlab.clocks import uv_clock
from dlnlab.models.base import DiagonalNetwork, check_alpha, init_shape, torch_dtype
from dlnlab.theory.flow import MirrorMap


class UVNetwork(DiagonalNetwork):
    """β = u ⊙ v with u₀ = √2·α·a, v₀ = 0 (a: the initialisation shape).

    GD on (u, v), u ← u − h ⊙ v, v ← v − h ⊙ u with h = lr·∇L(β), is exactly multiplicative in
    u ± v: (u ± v) ← (u ± v)(1 ∓ h). The network therefore holds p = (u + v)/2 and q = (u − v)/2
    as its parameters (`u` = p + q and `v` = p − q are read from them; β = p² − q²): at small α one
    of u ± v is ~α²/|u| and would be lost to cancellation in (u, v), and float64 rounding then
    flips its sign and switches on a coordinate that should stay off. Gradient flow integrates to
    u ± v = u₀·exp(±θ), θ = −∫∇L dτ, so the dual is s = ½ log(p/q) / log(1/α) for any shape a,
    computed without cancellation (docs/theory.md §2).
    """

    limit = "signed"

    def __init__(self, d: int, alpha: float, shape="uniform", shape_seed: int = 0,
                 dtype: str = "float64"):
        super().__init__()
        self.alpha = check_alpha(alpha)
        a = torch.as_tensor(init_shape(shape, d, shape_seed), dtype=torch_dtype(dtype, self.alpha))
        self.register_buffer("u0", math.sqrt(2) * self.alpha * a)
        self.p = nn.Parameter(self.u0 / 2)  # (u + v) / 2
        self.q = nn.Parameter(self.u0 / 2)  # (u − v) / 2

    @property
    def u(self) -> torch.Tensor:
        return self.p + self.q

    @property
    def v(self) -> torch.Tensor:
        return self.p - self.q

    def beta(self) -> torch.Tensor:
        return torch.addcmul(self.p * self.p, self.q, self.q, value=-1)  # u v = p² − q²

    def time_scale(self) -> float:
        return uv_clock(self.alpha)

    def dual(self) -> torch.Tensor:
        return 0.5 * (torch.log(self.p.detach()) - torch.log(self.q.detach())) / self.time_scale()

    def mirror_map(self) -> MirrorMap:
        shape = (self.u0 / (math.sqrt(2) * self.alpha)).cpu().double().numpy()
        return MirrorMap(math.log(self.alpha), depth=None, shape=shape)

    def power_form(self) -> tuple[str, str, int, float]:
        return "p", "q", 2, 1.0  # β = p² − q², p ← p − h·p, q ← q + h·q

    def descend(self, h: torch.Tensor) -> None:
        """GD on (u, v), as p ← p(1 − h), q ← q(1 + h): two in-place operations."""
        self.p.addcmul_(self.p, h, value=-1)
        self.q.addcmul_(self.q, h, value=1)
