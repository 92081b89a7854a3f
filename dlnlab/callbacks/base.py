"""Callbacks written for one network and run for every network of the stack (docs/design.md,
"Adding a callback").

A `NetworkCallback` is a Lightning callback whose work is done by one object per network (`start`
makes it, for each of the task's replicas, in `setup`, before a checkpoint restores their state):
after each block it hands each network's part of the block record (a dlnlab.record.Trajectory) to
that network's object. Such objects have `update(trajectory)` and may have `end(task)` (the run
ended: the final checkpoint and summary come after), `draw(task)` (after those: figures, which may
fail without losing anything), `summary()` (findings for the network's entry in summary.json), and
`state_dict()` / `load_state_dict()` (what a checkpoint keeps).
"""

import math
import warnings

import lightning.pytorch as pl
import numpy as np


class NetworkCallback(pl.Callback):
    """Fans Lightning's hooks out to one object per network; see the module docstring."""

    def start(self, replica, task):
        """The object that does this callback's work for one network (a dlnlab.record.Replica)."""
        raise NotImplementedError

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.networks = [self.start(replica, pl_module) for replica in pl_module.replicas]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for trajectory in outputs["record"].rows:
            self.networks[trajectory.replica.index].update(trajectory)

    def on_train_end(self, trainer, pl_module) -> None:
        for network in self.networks:
            if hasattr(network, "end"):
                network.end(pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        """Figures and other drawings, after the final checkpoint and summary: one that fails is
        skipped with a warning naming it, never fatal."""
        for network in self.networks:
            if hasattr(network, "draw"):
                try:
                    network.draw(pl_module)
                except Exception as e:  # noqa: BLE001 (anything a plot can raise: skip it)
                    warnings.warn(f"{type(self).__name__}: could not draw for "
                                  f"{network.replica.name or 'the run'}: {type(e).__name__}: {e}",
                                  stacklevel=1)

    def summary(self, index: int) -> dict:
        """Findings of network `index` for summary.json."""
        network = self.networks[index]
        return network.summary() if hasattr(network, "summary") else {}

    def state_dict(self) -> dict:
        return {"networks": [n.state_dict() if hasattr(n, "state_dict") else {}
                             for n in self.networks]}

    def load_state_dict(self, state_dict: dict) -> None:
        for network, state in zip(self.networks, state_dict["networks"]):
            if hasattr(network, "load_state_dict"):
                network.load_state_dict(state)


class Milestones:
    """When an occasional record (a histogram) is due: at the first record past each multiple of
    `every_t` of accelerated time up to t = 10·`every_t`, then past each 10% more of t (a long run
    writes like log t). `count` (checkpointed by the caller) is how many have been written."""

    def __init__(self, every_t: float):
        self.every_t, self.knee, self.count = every_t, 10 * every_t, 0

    def index(self, t: float) -> int:
        """The milestone interval accelerated time t falls in."""
        if t < self.knee:
            return math.floor(t / self.every_t)
        return math.floor(10 + math.log(t / self.knee) / math.log(1.1))

    def time(self, k: int) -> float:
        """Where milestone k is (the inverse of `index`)."""
        return k * self.every_t if k <= 10 else self.knee * 1.1 ** (k - 10)

    def due(self, t: np.ndarray, usable=lambda j: True):
        """Yield the indices into the increasing times `t` at which to write (a binary search per
        milestone, not a pass over every record); `usable(j)` may decline a record (the next one
        past the milestone is then tried)."""
        at = 0
        while at < len(t):
            j = at + int(np.searchsorted(t[at:], self.time(self.count) * (1 - 1e-9)))
            if j == len(t):
                return
            k = self.index(float(t[j]))
            if k >= self.count and usable(j):
                self.count = k + 1
                yield j
            at = j + 1
