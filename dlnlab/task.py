"""The LightningModule that trains a diagonal network by GD or SGD on L(beta) = ‖Xβ − y‖²/(2n).

Lightning costs about a millisecond per `training_step`, a GD step on a small problem about
ten microseconds: so each `training_step` runs up to `steps_per_call` optimiser steps on the
device-resident X and y, records the loss of every step in `step_losses`, and advances
`trainer.global_step` by the number of steps taken. Callbacks read that record.
"""


import lightning.pytorch as pl
import numpy as np
import torch

from dlnlab.models import DiagonalNetwork
from dlnlab.models.base import with_tensors

RECORD_BYTES = 2**26  # cap on the β and s recorded in one block (64 MB): with a small record interval, k·d floats


def steps_per_call(n: int, d: int, fused: bool = False) -> int:
    """Optimiser steps per training_step: Lightning and the callbacks cost ~2 ms a call, so small
    problems (a few µs a step) take up to 10,000 steps a call, from n·d = 20,000 on 1000; the fused
    engine, ten times faster a step, ten times more."""
    scale = 10 if fused else 1
    return max(1000, min(10_000 * scale, 2 * 10**7 * scale // (n * d)))


class DiagonalTask(pl.LightningModule):
    """GD (batch_size None: full batch) or SGD (random reshuffling: each epoch a fresh permutation
    of the n samples, cut into batches of `batch_size`, the remainder dropped) with a constant step.

    `step_losses[j]` is the full-data loss L(β) at global step `first_step + j`, before that
    step's update. Every `record_every` steps (and at the first step of a run) β and the dual s
    are recorded too: `record_steps[i]`, `record_betas[i]`, `record_duals[i]` (None for a model
    without a dual). A loss that becomes non-finite or exceeds `divergence_factor`·L(β_0) stops the
    run with `status = "diverged"`; `stop_requested` (set by a signal handler) stops it at the end of
    the current block with `status = "interrupted"`, so that parameters and step count agree.
    """

    def __init__(self, model: DiagonalNetwork, X: torch.Tensor, y: torch.Tensor, lr: float,
                 batch_size: int | None = None, steps_per_call: int = 1000, seed: int = 0, record_every: int = 100,
                 divergence_factor: float = 1e4, max_steps: int | None = None, fused: bool = False):
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
        self.stop_requested = False
        self.divergence_factor = divergence_factor
        self.max_steps = max_steps  # the steps to reach run.t_max (train() sets it; the trainer's max_steps holds it too)
        self.fused = fused  # step in dlnlab.kernel's compiled loop (CPU, a model with a power form)
        self.steps_done = 0
        self.initial_loss: float | None = None
        self.diverged_at: int | None = None
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
        self._shuffled: tuple[torch.Tensor, torch.Tensor] | None = None
        self._epoch_storage: tuple[torch.Tensor, torch.Tensor] | None = None

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

    def _epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """X and y in this epoch's random order (drawn on the device): batches are then contiguous views."""
        if self._perm is None or self._pos + self.batch_size > self.n:
            self._perm = torch.randperm(self.n, generator=self._generator, device=self.device)
            self._pos = 0
            self._shuffled = None
        if self._shuffled is None:  # reuse the buffers: a fresh 80 MB tensor per epoch costs its page faults
            if self._epoch_storage is None:
                self._epoch_storage = (torch.empty_like(self.X), torch.empty_like(self.y))
            Xs, ys = self._epoch_storage
            torch.index_select(self.X, 0, self._perm, out=Xs)
            torch.index_select(self.y, 0, self._perm, out=ys)
            self._shuffled = self._epoch_storage
        return self._shuffled

    def training_step(self, batch, batch_idx):
        k = min(self.steps_per_call, self.trainer.max_steps - self.trainer.global_step, self.record_cap([self]))
        first = self.trainer.global_step
        with torch.no_grad():
            losses, records = self._steps(first, k)
        self.take(first, losses, records)
        _count_optimizer_steps(self.trainer, k)
        if self.status == "diverged":
            self.trainer.should_stop = True
        elif self.stop_requested:
            self.status = "interrupted"
            self.trainer.should_stop = True

    def record_cap(self, tasks: list["DiagonalTask"]) -> int:
        """The most steps a block may take so that what the tasks record in it (β and s, d floats each, every
        `record_every` steps) stays within RECORD_BYTES."""
        d = self.X.shape[1]
        return max(1, RECORD_BYTES * min(task.record_every for task in tasks) // (16 * d * len(tasks)))

    def take(self, first: int, losses: torch.Tensor, records: "Records") -> None:
        """Make a block of steps the current record (losses from step `first` on, and its records),
        and mark the run diverged at its first loss that is not finite or above divergence_factor·L(β_0)."""
        self.first_step = first
        self.step_losses = losses
        self.steps_done = first + len(losses)
        self.record_steps, self.record_betas, self.record_duals = records
        if self.initial_loss is None:
            self.initial_loss = float(losses[0])
        bad = ~torch.isfinite(losses) | (losses > self.divergence_factor * self.initial_loss)
        if bad.any():
            self.status, self.diverged_at = "diverged", first + int(bad.nonzero()[0])

    def progress(self) -> dict[str, str]:
        """What the progress bar shows after a block: accelerated time and the loss."""
        if not len(self.step_losses):
            return {}
        return {"t": f"{self.accelerated_time(self.steps_done):.3f}", "loss": f"{float(self.step_losses[-1]):.3e}"}

    def _steps(self, first: int, k: int) -> tuple[torch.Tensor, "Records"]:
        """k optimiser steps on the device, with as few tensor operations per step as possible:
        the residuals go straight into rows of one buffer (losses come from it at the end), the
        gradient into a preallocated vector, already scaled by lr / batch."""
        if self.fused:
            return self._fused_steps(first, k)
        X, y, model = self.X, self.y, self.model
        n, d = X.shape
        residuals = torch.empty((k, n), dtype=X.dtype, device=X.device)
        rows = residuals.unbind(0)
        h = torch.empty(d, dtype=X.dtype, device=X.device)
        Xt, beta_of, descend, addmv = X.T, model.beta, model._descend, torch.addmv  # no lookups in the loop
        every, batch, scale = self.record_every, self.batch_size, self.lr / (self.batch_size or n)
        records = []
        Xs, ys = self._shuffled or (None, None)
        for j in range(k):
            beta = beta_of()
            if (first + j) % every == 0:
                records.append((first + j, beta.clone(), model.dual()))
            if batch is None:
                r = addmv(y, X, beta, beta=-1, out=rows[j])  # r = Xβ − y
                addmv(h, Xt, r, beta=0, alpha=scale, out=h)  # h = lr ∇L(β)
            else:  # the full residual in this epoch's order (for the loss), the batch's rows of it
                if self._shuffled is None or self._pos + batch > n:
                    Xs, ys = self._epoch()
                r = addmv(ys, Xs, beta, beta=-1, out=rows[j])
                a = self._pos
                addmv(h, Xs[a:a + batch].T, r[a:a + batch], beta=0, alpha=scale, out=h)
                self._pos = a + batch
            descend(h)
        losses = residuals.square_().sum(dim=1).mul_(0.5 / n)
        return losses, stack_records(records, X)

    def _fused_steps(self, first: int, k: int) -> tuple[torch.Tensor, "Records"]:
        """`_steps` in dlnlab.kernel's compiled loop: `fused_block` for a stack of one."""
        losses, records = self.fused_block(first, [self], [k])
        return losses[:, 0], records[0]

    def fused_block(self, first: int, tasks: list["DiagonalTask"], ends: list[int]) -> tuple[torch.Tensor, list["Records"]]:
        """max(ends) steps of the tasks' models (the rows of a stack, or this task's own model), stepped in
        dlnlab.kernel's compiled loop on numpy views of their tensors; task e stops after ends[e]. SGD's
        row orders for the block are drawn beforehand, in the order the tensor path draws them.
        Returns the losses (steps, tasks) and each task's records."""
        from dlnlab.kernel import power_steps  # numba compiles on first use (cached on disk after)

        X, y, k = self.X.numpy(), self.y.numpy(), max(ends)
        (n, d), batch = X.shape, self.batch_size or X.shape[0]
        a_name, b_name, depth, c = self.model.power_form()
        a, b = (self.model.get_parameter(name).detach().numpy().reshape(-1, d)[:len(tasks)] for name in (a_name, b_name))
        pos, perms = 0, np.arange(n)[None]
        if self.batch_size is not None:
            pos = self._pos if self._perm is not None else n  # n: a new epoch at the first step
            draws = max(0, -(-(k - (n - pos) // batch) // (n // batch)))
            current = self._perm if self._perm is not None else torch.zeros(n, dtype=torch.long)
            perms = torch.stack([current] + [torch.randperm(n, generator=self._generator) for _ in range(draws)]).numpy()
        every = np.array([task.record_every for task in tasks])
        losses, counts = np.empty((k, len(tasks)), X.dtype), np.zeros(len(tasks), np.int64)
        rec_a, rec_b = (np.empty((len(tasks), k // every.min() + 1, d), X.dtype) for _ in range(2))
        scales = np.array([task.lr / batch for task in tasks], X.dtype)
        epoch, pos = power_steps(X, y, a, b, depth, c, scales, np.array(ends), perms, batch, pos,
                                 self.batch_size is not None, first, every, losses, rec_a, rec_b, counts)
        if self.batch_size is not None:
            self._perm, self._pos, self._shuffled = torch.from_numpy(perms[epoch].copy()), pos, None
        records = []
        for row, task in enumerate(tasks):
            recorded = with_tensors(task.model, {a_name: torch.from_numpy(rec_a[row, :counts[row]]),
                                                 b_name: torch.from_numpy(rec_b[row, :counts[row]])})
            steps = range(first + (-first) % task.record_every, first + ends[row], task.record_every)
            records.append((list(steps), recorded.beta(), recorded.dual()))
        return torch.from_numpy(losses), records

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dlnlab_task"] = {"generator": self._generator.get_state() if self._generator else None,
                                     "perm": self._perm, "pos": self._pos, "initial_loss": self.initial_loss}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["dlnlab_task"]
        self._generator_state, self._perm, self._pos = state["generator"], state["perm"], state["pos"]
        self.initial_loss = state["initial_loss"]


Records = tuple[list[int], torch.Tensor, torch.Tensor | None]  # a block's recorded steps, β and s (rows)


def stack_records(records: list[tuple[int, torch.Tensor, torch.Tensor | None]], like: torch.Tensor) -> Records:
    """Records (step, β, s) taken one step at a time as one Records; `like` (X) gives an empty one its shape."""
    if not records:
        return [], like.new_empty((0, like.shape[1])), None
    steps, betas, duals = zip(*records)
    return list(steps), torch.stack(betas), None if duals[0] is None else torch.stack(duals)


def _count_optimizer_steps(trainer: pl.Trainer, k: int) -> None:
    """Advance `trainer.global_step` by k optimiser steps.

    Under manual optimisation Lightning counts a step per `optimizer.step()` call; the steps here
    are written out, so the counter (which checkpoints save and `max_steps` reads) is advanced directly.
    """
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for tracker in (progress.total, progress.current):
        tracker.ready += k
        tracker.completed += k
