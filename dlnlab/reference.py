"""The theory one network is compared against, computed once per network when first asked for.

Its model says which α → 0 limit it follows (`DiagonalNetwork.limit`: the saddle path of
Algorithm 1, docs/theory.md §3) and gives its mirror map for the exact finite-α flow (docs/theory.md
§4). The overlay, the figures, the coordinates and the summary all read the same `Reference`: its
limit costs milliseconds, its flow a fraction of a second, each computed on first use. A part that
cannot be computed is None, with one warning saying why, never fatal.
"""

import functools
import math
import warnings

import numpy as np

from dlnlab.checks import ConfigError
from dlnlab.theory import Flow, SaddlePath, flow, saddle_path


class TheoryWarning(UserWarning):
    """A part of a network's theory that cannot be had (no clock, no limit, no mirror map, a flow
    that could not be solved): the run goes on without it."""


class Reference:
    """The limit (`path`) and the exact flow (`flow`, solved to `horizon` in accelerated time) of
    one network (a dlnlab.record.Replica of `task`)."""

    def __init__(self, replica, task):
        self.replica, self.task = replica, task
        self.model = replica.model
        self.name = type(self.model).__name__
        self.has_clock = self.model.time_scale() is not None

    def _note(self, text: str, network: bool = True) -> None:
        """Warn once: a note about this network names it; one about the run's data (network=False)
        is the same for every replica, and Python's filter shows it once."""
        prefix = f"{self.replica.name}: " if self.replica.name and network else ""
        warnings.warn(prefix + text, TheoryWarning, stacklevel=2)

    @functools.cached_property
    def path(self) -> SaddlePath | None:
        """The saddle path of the limit the model follows (shared by replicas of one X, y)."""
        if not self.has_clock:
            self._note(f"{self.name} has no clock (time_scale): no limit or flow to compare with")
            return None
        if self.model.limit is None:
            self._note(f"{self.name}: " + getattr(self.model, "limit_note", (
                "declares no limit (DiagonalNetwork.limit = 'signed' or 'nonnegative'): no "
                "saddle path to compare with")))
            return None
        cache = self.task.saddle_paths
        if self.model.limit not in cache:
            cache[self.model.limit] = saddle_path(*self.task.theory_data, kind=self.model.limit)
        return cache[self.model.limit]

    @property
    def supports(self) -> list[int]:
        """Every coordinate the limit ever activates."""
        return sorted(set().union(*self.path.supports())) if self.path is not None else []

    def jump_levels(self) -> np.ndarray:
        """The loss levels whose first crossing marks each jump (docs/jump-times.md)."""
        return self.path.jump_levels() if self.path is not None else np.zeros(0)

    @functools.cached_property
    def horizon(self) -> float:
        """How far in accelerated time the flow is solved: the run's end, or past the limit's."""
        end = float(self.replica.time(self.replica.max_steps))
        return max(end, float(self.path.times[-1]) * 1.05) if self.path is not None else end

    @functools.cached_property
    def flow(self) -> Flow | None:
        """The exact finite-α flow at the network's α, to `horizon`."""
        if not self.has_clock:
            return None
        mirror = self.model.mirror_map()
        X, y = self.task.theory_data
        if mirror is None:
            self._note(f"{self.name} has no mirror map: no exact-flow overlay")
        elif X.shape[1] > self.task.flow_max_d:
            self._note(f"d = {X.shape[1]} > theory.flow_max_d = {self.task.flow_max_d}: no "
                       "exact-flow overlay (its cost grows like d³; raise theory.flow_max_d)",
                       network=False)
        elif math.isfinite(self.horizon):
            try:
                return flow(X, y, mirror.log_alpha, [self.horizon], depth=mirror.depth,
                            shape=mirror.shape, nonnegative=mirror.nonnegative,
                            levels=self.jump_levels(), dense=True, rtol=1e-8, atol=1e-10)
            except (ConfigError, RuntimeError) as e:
                self._note(f"no exact-flow overlay: {e}")
        return None


def reference(replica, task) -> Reference:
    """The network's Reference (made once, then kept on the replica)."""
    if replica.reference is None:
        replica.reference = Reference(replica, task)
    return replica.reference
