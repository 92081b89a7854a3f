"""The LightningModule that trains a diagonal network by GD or SGD on L(beta) = ‖Xβ − y‖²/(2n).

Lightning costs about a millisecond per `training_step`, a GD step on a small problem about
ten microseconds: so each `training_step` runs up to `steps_per_call` optimiser steps on the
device-resident X and y, records the loss of every step in `step_losses`, and advances
`trainer.global_step` by the number of steps taken. Callbacks read that record.
"""

import math

import lightning.pytorch as pl
import torch

from dlnlab.models import DiagonalNetwork


class DiagonalTask(pl.LightningModule):
    """GD (batch_size None: full batch) or SGD (random reshuffling: each epoch a fresh permutation
    of the n samples, cut into batches of `batch_size`, the remainder dropped) with a constant step.

    `step_losses[j]` is the full-data loss L(β) at global step `first_step + j`, before that
    step's update. Every `record_every` steps (and at the first step of a run) β and the dual s
    are recorded too: `record_steps[i]`, `record_betas[i]`, `record_duals[i]` (None for a model
    without a dual). A non-finite loss stops the run with `status = "diverged"`.
    """

    def __init__(self, model: DiagonalNetwork, X: torch.Tensor, y: torch.Tensor, lr: float,
                 batch_size: int | None = None, steps_per_call: int = 1000, seed: int = 0, record_every: int = 100):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        dtype = next(model.parameters()).dtype
        self.register_buffer("X", X.to(dtype), persistent=False)
        self.register_buffer("y", y.to(dtype), persistent=False)
        self.lr = lr
        self.batch_size = batch_size
        self.steps_per_call = steps_per_call
        self.seed = seed
        self.status = "running"
        self.step_losses = torch.empty(0, dtype=dtype)
        self.first_step = 0
        self.record_every = record_every
        self.record_steps: list[int] = []
        self.record_betas = torch.empty(0, dtype=dtype)
        self.record_duals: torch.Tensor | None = None
        self._generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None
        self._perm: torch.Tensor | None = None
        self._pos = 0

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def accelerated_time(self, step: int) -> float:
        """t = tau / T_alpha with tau = step · lr (PAPER.md §2)."""
        return step * self.lr / self.model.time_scale()

    def loss(self) -> float:
        """The full-data loss L(beta) at the current parameters."""
        with torch.no_grad():
            r = self.X @ self.model.beta() - self.y
            return float(r.dot(r)) / (2 * self.n)

    def configure_optimizers(self):
        return None  # the update is written out in training_step; plain (S)GD has no state

    def on_fit_start(self) -> None:
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.seed)
        if self._generator_state is not None:
            self._generator.set_state(self._generator_state)

    def _batch(self) -> torch.Tensor:
        """Indices of the next SGD mini-batch, drawn on the device."""
        if self._perm is None or self._pos + self.batch_size > self.n:
            self._perm = torch.randperm(self.n, generator=self._generator, device=self.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def training_step(self, batch, batch_idx):
        k = min(self.steps_per_call, self.trainer.max_steps - self.trainer.global_step)
        X, y, model, lr = self.X, self.y, self.model, self.lr
        params = list(model.parameters())
        losses = torch.empty(k, dtype=X.dtype, device=X.device)
        first = self.trainer.global_step
        record_steps, betas, duals = [], [], []
        with torch.no_grad():
            for j in range(k):
                beta = model.beta()
                if (first + j) % self.record_every == 0:
                    record_steps.append(first + j)
                    betas.append(beta.clone())
                    duals.append(model.dual())
                r = X @ beta - y
                losses[j] = r.dot(r)
                if self.batch_size is None:
                    g = X.T @ r / self.n
                else:
                    idx = self._batch()
                    g = X[idx].T @ r[idx] / self.batch_size
                for p, dp in zip(params, model.param_grads(g)):
                    p.sub_(dp, alpha=lr)
        losses /= 2 * self.n
        self.first_step = first
        self.step_losses = losses
        self.record_steps = record_steps
        self.record_betas = torch.stack(betas) if betas else losses.new_empty((0, X.shape[1]))
        self.record_duals = torch.stack(duals) if duals and duals[0] is not None else None
        _count_optimizer_steps(self.trainer, k)
        if not math.isfinite(float(losses[-1])):
            self.status = "diverged"
            self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dlnlab_task"] = {"generator": self._generator.get_state() if self._generator else None,
                                     "perm": self._perm, "pos": self._pos, "status": self.status}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["dlnlab_task"]
        self._generator_state, self._perm, self._pos = state["generator"], state["perm"], state["pos"]
        self.status = state["status"]


def _count_optimizer_steps(trainer: pl.Trainer, k: int) -> None:
    """Advance `trainer.global_step` by k optimiser steps.

    Under manual optimisation Lightning counts a step per `optimizer.step()` call; the steps here
    are written out, so the counter (which checkpoints save and `max_steps` reads) is advanced directly.
    """
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for tracker in (progress.total, progress.current):
        tracker.ready += k
        tracker.completed += k
