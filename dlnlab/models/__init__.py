"""Diagonal linear networks: each knows beta(), its clock time_scale() and its dual()."""

from dlnlab.models.base import DiagonalNetwork
from dlnlab.models.symmetric import SymmetricNetwork
from dlnlab.models.uv import UVNetwork

__all__ = ["DiagonalNetwork", "SymmetricNetwork", "UVNetwork"]
