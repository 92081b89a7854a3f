"""Diagonal linear networks (docs/design.md, "Models"): the contract every model follows and what
a model author needs, and the built-in networks."""

from dlnlab.models.base import (
                                DiagonalNetwork,
                                check_alpha,
                                check_depth,
                                check_dtype,
                                init_shape,
                                torch_dtype,
)
from dlnlab.models.positive import PositiveNetwork
from dlnlab.models.symmetric import SymmetricNetwork
from dlnlab.models.uv import UVNetwork

__all__ = ["DiagonalNetwork", "PositiveNetwork", "SymmetricNetwork", "UVNetwork", "check_alpha",
           "check_depth", "check_dtype", "init_shape", "torch_dtype"]
