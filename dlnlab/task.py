"""The LightningModule: a stack of E ≥ 1 networks trained by GD or SGD on L(β) = ‖Xβ − y‖²/(2n).

Lightning costs about a millisecond per `training_step`, a GD step on a small problem a microsecond
or less: so each `training_step` runs a block of up to `steps_per_call` optimiser steps of the whole
stack through its engine (dlnlab.engines), on the device-resident X and y, advances
`trainer.global_step` by the steps taken, and returns the block's record (dlnlab.record) for the
callbacks (docs/design.md, "Task").
"""

import functools
import signal
import sys
import time

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from dlnlab.callbacks.base import NetworkCallback
from dlnlab.engines import Sampler
from dlnlab.files import write_json
from dlnlab.interrupts import one_shot
from dlnlab.record import BlockRecord, History, Replica, Schedule, Trajectory
from dlnlab.resume import fingerprint
from dlnlab.stack import Stack
from dlnlab.summary import network_summary, run_summary

RECORD_BYTES = 2**26  # cap on what a block records (β and s of every row): 64 MB
LOSS_BYTES = 2**25  # cap on a block's loss record (steps × rows): 32 MB


def steps_per_call(n: int, d: int, fused: bool = False) -> int:
    """Optimiser steps per training_step: Lightning and the callbacks cost about a millisecond a
    call and a small problem's step a microsecond or less, so a block grows as the problem shrinks,
    from 1,000 steps (n·d = 20,000 and above) up to 10,000 (100,000 in the fused engine)."""
    scale = 10 if fused else 1
    return max(1000, min(10_000 * scale, 2 * 10**7 * scale // (n * d)))


class DiagonalTask(pl.LightningModule):
    """GD (batch_size None: full batch) or SGD (random reshuffling, dlnlab.engines.Sampler) with a
    constant step per network, on a stack of networks sharing X, y and the batches.

    Each network (`replicas[e]`, dlnlab.record.Replica) stops at its own step count, or when its
    loss becomes non-finite or exceeds `divergence_factor`·L(β₀) (status "diverged"; its record
    ends at the step before); the others go on. `stop_requested` (a signal) stops every network at
    the end of the current block (status "interrupted"), so that parameters and step counts agree.
    """

    def __init__(self, stack: Stack, replicas: list[Replica], X: torch.Tensor, y: torch.Tensor,
                 engine, batch_size: int | None = None, seed: int = 0, steps_per_call: int = 1000,
                 divergence_factor: float = 1e4, log_every_t: float = 0.02,
                 log_loss_rtol: float = 0.05, flow_max_d: int = 300, config: dict | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.stack = stack
        self.replicas = replicas  # a plain list: their models' tensors are the stack's, saved there
        dtype = next(iter(stack.stacked().values())).dtype
        self.register_buffer("X", X.to(dtype), persistent=False)
        self.register_buffer("y", y.to(dtype), persistent=False)
        self.engine = engine
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_call, self.divergence_factor = steps_per_call, divergence_factor
        self.config = config or {}  # the run's resolved configuration, saved in checkpoints
        self.data_fingerprint = fingerprint(X, y)  # saved too: a resume checks its data by it
        self.flow_max_d = flow_max_d  # the exact flow is solved for d ≤ this (dlnlab.reference)
        self.saddle_paths: dict = {}  # the limits of X, y by kind, shared by the replicas
        self.schedules = [(Schedule(log_every_t, log_loss_rtol),
                           Schedule(log_every_t, log_loss_rtol))
                          for _ in replicas]  # per network: over its steps, over its records
        for replica in replicas:
            replica.history = History(X.shape[1])
        self.sampler: Sampler | None = None
        self.stop_requested: int | None = None  # the signal that asked the run to stop
        self._restored: dict | None = None
        self._handlers: dict = {}
        self.output_dir = None  # where summary.json goes (train() sets it)
        self.last_summary: dict = {}
        self.started = time.perf_counter()  # wall_time_s in summary.json counts from here

    @property
    def max_steps(self) -> int:
        """The run's length: its longest network's step count."""
        return max(replica.max_steps for replica in self.replicas)

    def configure_optimizers(self):
        return None  # the update is written out by the engines; plain (S)GD has no state

    def train_dataloader(self) -> DataLoader:
        """No data, only ticks: one per training_step, which steps on the device-resident X, y."""
        return DataLoader(_Ticks(), batch_size=None)

    def on_fit_start(self) -> None:
        self.stack.bind()  # the stack may have moved to another device
        self.sampler = Sampler(self.X.shape[0], self.batch_size, self.seed, self.device)
        if self._restored is not None:
            self.sampler.load_state_dict(self._restored)

    def on_train_start(self) -> None:
        """Signals stop the run at the end of its block (after Lightning's own handlers are set:
        its SIGTERM handler would end the fit with an exception, skipping the end of the run)."""
        self._handlers = {sig: signal.signal(sig, self._request_stop) for sig in
                          (signal.SIGINT, signal.SIGTERM)}
        one_shot(signal.SIGINT)  # the second Ctrl-C ends the process even inside a compiled block

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = signum
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C stops at once (status 130)
        print(f"\n{signal.Signals(signum).name}: stopping at the end of this block of steps, with "
              "a checkpoint and the summary (Ctrl-C again to quit at once)", file=sys.stderr)

    def on_train_end(self) -> None:
        """The run's statuses, then summary.json: after the final checkpoint (the callbacks'
        on_train_end come first), before any figure (on_fit_end) that might fail."""
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}
        for replica in self.replicas:
            if replica.status == "running":
                done = replica.steps_done >= replica.max_steps
                replica.status = "completed" if done else "interrupted"
        self.last_summary = self.summary()
        if self.output_dir is not None:
            write_json(self.output_dir / "summary.json", self.last_summary)

    def summary(self, status: str | None = None, message: str | None = None) -> dict:
        """summary.json: each network's entry with the callbacks' findings (dlnlab.summary); with
        `status` (e.g. "failed") and `message`, every network still running gets them."""
        wall_time_s = time.perf_counter() - self.started
        callbacks = [c for c in (self.trainer.callbacks if self._trainer else [])
                     if isinstance(c, NetworkCallback) and hasattr(c, "networks")]
        entries = []
        for replica in self.replicas:
            if status is not None and replica.status == "running":
                replica.status = status
            findings = {k: v for c in callbacks for k, v in c.summary(replica.index).items()}
            entry = network_summary(self, replica, findings, wall_time_s)
            if message is not None and replica.status == status:
                entry["message"] = message
            entries.append(entry if not replica.name else {"replica": replica.name, **entry})
        if len(entries) == 1 and not self.replicas[0].name:
            return entries[0]
        return run_summary(entries, self.config, max(r.steps_done for r in self.replicas),
                           wall_time_s)

    def training_step(self, batch, batch_idx) -> dict:
        first = self.trainer.global_step
        running = [replica.status == "running" and replica.steps_done < replica.max_steps
                   for replica in self.replicas]
        k = min(self.steps_per_call, self._cap(running))
        ends = [min(k, replica.max_steps - first) if go else 0
                for replica, go in zip(self.replicas, running)]
        steps = self.engine.run(self.stack, self.X, self.y, self.sampler, first, ends,
                                [replica.record_every for replica in self.replicas],
                                [replica.lr for replica in self.replicas])
        losses = steps.losses.cpu().numpy()
        h_max = None if steps.h_max is None else steps.h_max.cpu().numpy()
        rows = []
        for e, replica in enumerate(self.replicas):
            if ends[e]:
                rows.append(self._trajectory(
                    replica, first, losses[e, :ends[e]], steps.record_steps[e], steps.betas[e],
                    steps.recorded[e], None if h_max is None else h_max[e, :ends[e]]))
        advance_global_step(self.trainer, max(ends))
        if self.stop_requested is not None:
            for replica in self.replicas:
                replica.status = "interrupted" if replica.status == "running" else replica.status
        if not any(replica.status == "running" and replica.steps_done < replica.max_steps
                   for replica in self.replicas):
            self.trainer.should_stop = True
        return {"record": BlockRecord(first, rows)}

    @functools.cached_property
    def theory_data(self) -> tuple[np.ndarray, np.ndarray]:
        """X and y as float64 numpy arrays on the CPU, for the theory, the figures and the end
        points: made once and shared by every network and callback (a view of X for a float64 CPU
        run; one copy otherwise, not one per replica and callback)."""
        return self.X.cpu().double().numpy(), self.y.cpu().double().numpy()

    def _cap(self, running: list[bool]) -> int:
        """The most steps a block may take so that its records stay within RECORD_BYTES (β and s, d
        floats each, of every running row every `record_every` steps) and its losses within
        LOSS_BYTES."""
        rows = [replica for replica, go in zip(self.replicas, running) if go]
        d = self.X.shape[1]
        every = min(replica.record_every for replica in rows)
        return max(1, min(RECORD_BYTES * every // (16 * d * len(rows)),
                          LOSS_BYTES // (8 * len(rows))))

    def _trajectory(self, replica: Replica, first: int, losses: np.ndarray, steps: np.ndarray,
                    betas: torch.Tensor, recorded: dict[str, torch.Tensor],
                    h_max: np.ndarray | None) -> Trajectory:
        """A network's part of the block, up to its divergence if it diverged in it; its
        parameters and dual only at the records worth logging (the others are never read)."""
        if replica.initial_loss is None:
            replica.initial_loss = float(losses[0])
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(losses) | (losses > self.divergence_factor * replica.initial_loss)
        if bad.any():
            replica.status, replica.diverged_at = "diverged", first + int(np.argmax(bad))
            losses = losses[:replica.diverged_at - first]
        kept = int(np.searchsorted(steps, first + len(losses)))
        steps, betas = steps[:kept], betas[:kept].cpu().numpy()
        replica.steps_done = first + len(losses)
        with np.errstate(divide="ignore"):
            log_losses = np.log(losses)
        by_steps, by_records = self.schedules[replica.index]
        logged = by_steps.select(replica.time(first + np.arange(len(losses))), log_losses)
        logged_records = by_records.select(replica.time(steps), log_losses[steps - first])
        if len(losses) and (replica.steps_done >= replica.max_steps or replica.status != "running"
                            or self.stop_requested is not None):  # its last block: its last step
            logged = np.union1d(logged, [len(losses) - 1]).astype(np.int64)
            logged_records = np.union1d(logged_records, np.arange(len(steps))[-1:]).astype(np.int64)
        parameters = {name: value[logged_records] for name, value in recorded.items()}
        duals = self.stack.dual(replica.index, parameters)
        trajectory = Trajectory(
            replica, first, losses, log_losses, steps, betas,
            None if duals is None else duals.cpu().numpy(), logged, logged_records,
            {name: value.cpu().numpy() for name, value in parameters.items()},
            None if h_max is None else h_max[:len(losses)])
        replica.history.append(trajectory)
        return trajectory

    def progress(self) -> dict[str, str]:
        """What the progress bar shows: the longest network's t and loss, and how many still run."""
        replica = max(self.replicas, key=lambda r: r.steps_done)
        shown = {"t": f"{replica.time(replica.steps_done):.3f}"}
        if len(self.replicas) > 1:
            shown["running"] = f"{sum(r.status == 'running' for r in self.replicas)}/" \
                               f"{len(self.replicas)}"
        return shown

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dlnlab"] = {"sampler": self.sampler.state_dict() if self.sampler else None,
                                "replicas": [replica.state_dict() for replica in self.replicas],
                                "schedules": [[s.state_dict() for s in pair] for pair in
                                              self.schedules],
                                "histories": [replica.history.state_dict() for replica in
                                              self.replicas],
                                "config": self.config,
                                "identity": {"engine": self.engine.name, "device": self.device.type,
                                             "data": self.data_fingerprint}}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["dlnlab"]
        self._restored = state["sampler"]
        for replica, saved, history in zip(self.replicas, state["replicas"], state["histories"]):
            replica.load_state_dict(saved)
            replica.history.load_state_dict(history)
        for pair, saved in zip(self.schedules, state["schedules"]):
            for schedule, s in zip(pair, saved):
                schedule.load_state_dict(s)


class _Ticks(IterableDataset):
    """An endless stream of placeholders: each asks the task for its next block of steps."""

    def __iter__(self):
        while True:
            yield 0


def advance_global_step(trainer: pl.Trainer, k: int) -> None:
    """Advance `trainer.global_step` by k optimiser steps.

    Under manual optimisation Lightning counts a step per `optimizer.step()` call; the engines'
    steps are written out, so the counter (which checkpoints save, `max_steps` reads and every
    callback sees) is advanced here. Lightning has no public API for it: this is the one place that
    touches its loop internals, pinned by tests/test_task.py so that a Lightning upgrade fails a
    test, not a run."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for tracker in (progress.total, progress.current):
        tracker.ready += k
        tracker.completed += k
