"""The block record: what each `training_step` hands the callbacks (docs/design.md, "Record").

A block of steps of a stack gives one `Trajectory` per network that stepped in it: the loss at
every step, β and the dual s at the recorded steps (every `record_every` steps), and which of those
steps are worth logging (`Schedule`): callbacks consume these through Lightning's
`on_train_batch_end(outputs={"record": BlockRecord})` and never re-run the model.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dlnlab.models import DiagonalNetwork


@dataclass
class Replica:
    """One network of the stack as callbacks see it: a single run has one (named ""), a replica run
    one per value of its lists (named like a sweep's jobs, "0_model.alpha=1e-05").

    `model` is live: its tensors are its row of the stack. Its clock, its step budget and where its
    files go are fixed; `status` ("running", "completed", "diverged", "interrupted"), `steps_done`
    and `diverged_at` say how its training went."""

    index: int
    name: str
    model: DiagonalNetwork
    lr: float
    max_steps: int  # the steps that reach run.t_max (or trainer.max_steps)
    record_every: int  # β and s are recorded at the multiples of this step
    directory: Path
    config: dict = field(default_factory=dict)  # its resolved configuration
    tensorboard: object = None  # its dlnlab.events.TensorBoard, or None: no event files
    history: "History | None" = None  # its record at the logged steps (the task keeps it)
    reference: object = None  # its dlnlab.reference.Reference, computed when first asked for
    status: str = "running"
    steps_done: int = 0
    initial_loss: float | None = None
    diverged_at: int | None = None

    @property
    def clock(self) -> float:
        """T_α: accelerated time t = step · lr / T_α (docs/theory.md §2.1); 1 without a clock."""
        return self.model.time_scale() or 1.0

    @property
    def steps_per_t(self) -> float:
        return self.clock / self.lr

    def time(self, step):
        """The accelerated time of a global step (or an array of them)."""
        return step / self.steps_per_t

    def state_dict(self) -> dict:
        return {"status": self.status, "steps_done": self.steps_done,
                "initial_loss": self.initial_loss, "diverged_at": self.diverged_at}

    def load_state_dict(self, state: dict) -> None:
        self.status = "running" if state["status"] == "interrupted" else state["status"]
        self.steps_done, self.diverged_at = state["steps_done"], state["diverged_at"]
        self.initial_loss = state["initial_loss"]


@dataclass(frozen=True)
class Trajectory:
    """What one network did in a block: the loss (and the step's size ‖h‖∞) at every step and the
    recorded β, which of them are worth logging, and the parameters and the dual s where logged
    (docs/design.md, "The record")."""

    replica: Replica
    first_step: int
    losses: np.ndarray  # L at steps first_step, first_step + 1, …, each before that step's update
    log_losses: np.ndarray  # log L at every step (computed once for every callback that needs it)
    steps: np.ndarray  # the recorded steps (multiples of replica.record_every)
    betas: np.ndarray  # β at the recorded steps, a row each
    duals: np.ndarray | None  # s at the logged records, a row each (None: the model has no dual)
    logged: np.ndarray  # indices of the steps worth logging
    logged_records: np.ndarray  # indices of the recorded steps worth logging
    parameters: dict  # the network's parameters at the logged records, by name (a row each)
    h_max: np.ndarray | None = None  # ‖h‖∞ at every step, h = lr·∇L_B as descend(h) takes it

    @property
    def end_step(self) -> int:
        """The global step after the block's last."""
        return self.first_step + len(self.losses)

    @property
    def record_losses(self) -> np.ndarray:
        """L at the recorded steps."""
        return self.losses[self.steps - self.first_step]


@dataclass(frozen=True)
class BlockRecord:
    """A training_step's record: a Trajectory for each network that stepped in the block."""

    first_step: int
    rows: list[Trajectory]


class Schedule:
    """Which steps are worth logging: the first of a run; the first at or after each point of a grid
    in accelerated time, spaced `every_t` up to t = 1 and geometrically beyond (relative spacing
    `every_t`: a run's logging cost grows like log t, not t); and any at which log L has moved into
    a new bin of width `loss_rtol` (a jump is logged densely, a plateau almost never)."""

    def __init__(self, every_t: float, loss_rtol: float):
        self.every_t, self.loss_rtol = every_t, loss_rtol
        self.last: tuple[int, float] | None = None  # the (grid point, log-loss bin) last seen

    def grid(self, t: np.ndarray) -> np.ndarray:
        """The index of the grid interval each accelerated time falls in."""
        t = np.asarray(t, dtype=float)
        beyond = 1 / self.every_t + np.log(np.maximum(t, 1.0)) / math.log1p(self.every_t)
        return np.floor(np.where(t < 1, t / self.every_t, beyond))

    def select(self, t: np.ndarray, log_loss: np.ndarray) -> np.ndarray:
        """Indices of the entries (accelerated times t, log L) to log, given those seen before."""
        if not len(t):
            return np.zeros(0, dtype=np.int64)
        cells = self.grid(t)
        with np.errstate(invalid="ignore"):
            bins = np.floor(np.asarray(log_loss) / self.loss_rtol)
        last = self.last if self.last is not None else (np.nan, np.nan)  # NaN: unlike anything
        changed = ((cells != np.concatenate([[last[0]], cells[:-1]]))
                   | (bins != np.concatenate([[last[1]], bins[:-1]])))
        self.last = (float(cells[-1]), float(bins[-1]))
        return np.flatnonzero(changed)

    def state_dict(self) -> dict:
        return {"last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.last = None if state["last"] is None else tuple(state["last"])


class History:
    """A network's record at its logged steps over the whole run, kept by the task for the callbacks
    that draw or back-fill from it: the loss at the logged steps, and β and s at the logged records,
    of every coordinate when d ≤ MAX_D (else of the coordinates callbacks asked to `keep`, from
    then).
    Stored as arrays a block (checkpointed as tensors); read back whole, concatenated."""

    MAX_D = 2048

    def __init__(self, d: int):
        self.d = d
        self.kept = list(range(d)) if d <= self.MAX_D else []
        self.blocks: dict[str, list] = {name: [] for name in ("loss_step", "loss", "step", "beta",
                                                              "dual")}

    def keep(self, coordinates) -> None:
        """Keep these coordinates from now on too (all are kept when d ≤ MAX_D)."""
        self.kept += [int(i) for i in coordinates if int(i) not in self.kept]

    def append(self, trajectory: "Trajectory") -> None:
        at, rows = trajectory.logged, trajectory.logged_records
        self.blocks["loss_step"].append(trajectory.first_step + at)
        self.blocks["loss"].append(trajectory.losses[at])
        self.blocks["step"].append(trajectory.steps[rows])
        self.blocks["beta"].append(self._columns(trajectory.betas[rows]))
        duals = trajectory.duals
        self.blocks["dual"].append(None if duals is None else self._columns(duals))

    def _columns(self, rows: np.ndarray) -> np.ndarray:
        """The kept coordinates of these rows, as a d-wide array (NaN where not kept)."""
        if len(self.kept) == self.d:
            return rows
        out = np.full((len(rows), self.d), np.nan)
        out[:, self.kept] = rows[:, self.kept]
        return out

    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, L) at every logged step so far."""
        return (np.concatenate(self.blocks["loss_step"] or [np.zeros(0, np.int64)]),
                np.concatenate(self.blocks["loss"] or [np.zeros(0)]))

    def records(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(steps, β, s) at every logged record so far (s None for a model without a dual)."""
        steps = np.concatenate(self.blocks["step"] or [np.zeros(0, np.int64)])
        betas = np.vstack(self.blocks["beta"] or [np.zeros((0, self.d))])
        duals = self.blocks["dual"]
        has_dual = bool(duals) and duals[-1] is not None
        return steps, betas, np.vstack(duals) if has_dual else None

    def state_dict(self) -> dict:
        """The blocks as tensors (as lists of floats, a long run's took seconds to pickle)."""
        return {"kept": self.kept, **{name: [None if a is None else torch.from_numpy(a)
                                             for a in arrays] for name, arrays in
                                      self.blocks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.kept = list(state["kept"])
        self.blocks = {name: [None if a is None else a.numpy() for a in state[name]] for name in
                       self.blocks}
