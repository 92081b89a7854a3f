"""The callbacks of a replica run: one set per replica, each seeing its replica as a run of its own."""

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from dlnlab.callbacks.theory import TheoryOverlay


class ReplicaTrainer:
    """What a replica's callbacks see as the trainer: the replica's own step count and step budget, its
    own directory, logger and callbacks; anything else is the run's trainer."""

    def __init__(self, trainer: pl.Trainer, replica, root: Path, logger, callbacks: list):
        self._trainer, self._replica = trainer, replica
        self.default_root_dir, self.callbacks = str(root), callbacks
        self.loggers = [logger] if logger else []
        self.logger = logger or None

    @property
    def global_step(self) -> int:
        return self._replica.steps_done

    @property
    def max_steps(self) -> int:
        return self._replica.max_steps

    def __getattr__(self, name):
        return getattr(self._trainer, name)


class ReplicaCallbacks(pl.Callback):
    """Runs each replica's callbacks on its own record (`task.replicas[e]`) with its own ReplicaTrainer:
    at fit start and end for all, after a block for those that stepped in it (`task.ran`). The saddle
    path is computed once (every replica has the same X, y); each replica's exact flow is its own."""

    def __init__(self, roots: list[Path], loggers: list, callbacks: list[list]):
        self.roots, self.replica_loggers, self.replica_callbacks = roots, loggers, callbacks
        self._views: list[ReplicaTrainer] = []

    def views(self, trainer, task) -> list[ReplicaTrainer]:
        """Each replica's trainer as its callbacks see it."""
        if not self._views or self._views[0]._trainer is not trainer:
            self._views = [ReplicaTrainer(trainer, replica, root, logger, callbacks) for replica, root, logger, callbacks
                           in zip(task.replicas, self.roots, self.replica_loggers, self.replica_callbacks)]
        return self._views

    def _each(self, trainer, task, replicas=None):
        views = self.views(trainer, task)
        for e in range(len(views)) if replicas is None else replicas:
            yield views[e], task.replicas[e], self.replica_callbacks[e]

    def on_fit_start(self, trainer, pl_module) -> None:
        path = None
        for view, replica, callbacks in self._each(trainer, pl_module):
            for callback in callbacks:
                if isinstance(callback, TheoryOverlay) and path is not None:
                    callback.path = path
                callback.on_fit_start(view, replica)
                if isinstance(callback, TheoryOverlay):
                    path = callback.path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for view, replica, callbacks in self._each(trainer, pl_module, pl_module.ran):
            for callback in callbacks:
                callback.on_train_batch_end(view, replica, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module) -> None:
        drawing = sum(isinstance(c, TheoryOverlay) and c.figures for callbacks in self.replica_callbacks for c in callbacks)
        if drawing > 4:  # a pause of a minute at 64 replicas, said before it starts
            rank_zero_info(f"drawing the figures of {drawing} replicas (~0.75 s each; "
                           "callbacks.theory.figures=false skips them, aggregate.png still compares the replicas)")
        for view, replica, callbacks in self._each(trainer, pl_module):
            for callback in callbacks:
                callback.on_train_end(view, replica)
        self._finalize("success")

    def on_exception(self, trainer, pl_module, exception) -> None:
        for view, replica, callbacks in self._each(trainer, pl_module):
            for callback in callbacks:
                callback.on_exception(view, replica, exception)
        self._finalize("failed")

    def _finalize(self, status: str) -> None:
        for logger in self.replica_loggers:
            if logger:
                logger.finalize(status)

    def summaries(self) -> list[dict]:
        """Each replica's callbacks' findings (plateaus, saddles, active events), for its summary entry."""
        return [{k: v for c in callbacks if hasattr(c, "summary") for k, v in c.summary().items()}
                for callbacks in self.replica_callbacks]

    def state_dict(self) -> dict:
        return {"replicas": [[c.state_dict() for c in callbacks] for callbacks in self.replica_callbacks]}

    def load_state_dict(self, state_dict: dict) -> None:
        for callbacks, states in zip(self.replica_callbacks, state_dict["replicas"]):
            for callback, state in zip(callbacks, states):
                callback.load_state_dict(state)
