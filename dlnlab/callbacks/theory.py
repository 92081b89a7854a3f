"""The run against its theory in TensorBoard: the α → 0 limit and the exact finite-α flow as their
own series, the per-saddle comparison table, and hyperparameters with final metrics."""

import math

import numpy as np

from dlnlab.callbacks.base import NetworkCallback
from dlnlab.callbacks.coordinates import tags
from dlnlab.reference import reference


class JumpClock:
    """The first steps at which a run's loss falls to each jump level in turn (the jump times'
    definition, docs/jump-times.md), found exactly from every step's loss."""

    def __init__(self, levels: np.ndarray):
        self.levels = np.asarray(levels, dtype=float)
        self.steps: list[int] = []

    def update(self, trajectory) -> None:
        losses, start = trajectory.losses, 0
        while len(self.steps) < len(self.levels):
            below = np.flatnonzero(losses[start:] <= self.levels[len(self.steps)])
            if not len(below):
                return
            start += int(below[0])
            self.steps.append(trajectory.first_step + start)

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state["steps"])


class TheoryOverlay(NetworkCallback):
    """For each network whose model has a clock: its limit and exact flow (dlnlab.reference) as the
    `limit` and `flow` series of its TensorBoard folder, with the run's tags (`loss`, `beta/i`,
    `dual/i`, also `vs_t/…` against accelerated time) at the run's logged steps, so that each chart
    overlays run, flow and limit; the coordinates shown are the limit's supports and any the run
    activates (|β_i| > `threshold`), at most `max_coords`, each from t = 0. At the end: the
    per-saddle comparison (`theory/saddles` text, summary.json's `saddles`) and hyperparameters with
    final metrics (TensorBoard's HParams)."""

    def __init__(self, *, threshold: float, max_coords: int):
        self.threshold, self.max_coords = threshold, max_coords

    def start(self, replica, task):
        return _Overlay(replica, task, self.threshold, self.max_coords)


class _Overlay:
    """One network against its theory (see TheoryOverlay)."""

    def __init__(self, replica, task, threshold: float, max_coords: int):
        self.replica, self.threshold, self.max_coords = replica, threshold, max_coords
        self.reference = reference(replica, task)
        self.tracked = self.reference.supports[:max_coords]
        replica.history.keep(self.tracked)
        self.clock = JumpClock(self.reference.jump_levels())
        self.rows: list[dict] = []
        self.X, self.y = task.theory_data

    def update(self, trajectory) -> None:
        if self.reference.path is None and self.reference.flow is None:
            return
        self.clock.update(trajectory)
        betas = trajectory.betas  # a coordinate active at some record (no |β| temporary):
        active = np.flatnonzero((betas.max(axis=0, initial=-np.inf) > self.threshold)
                                | (betas.min(axis=0, initial=np.inf) < -self.threshold))
        new = [int(i) for i in active if i not in self.tracked]
        new = new[:self.max_coords - len(self.tracked)]
        self.tracked += new
        self.replica.history.keep(new)
        if self.replica.tensorboard is None:
            return
        if new and len(trajectory.steps):  # from t = 0 up to this block
            steps, _, _ = self.replica.history.records()
            self._write(steps[steps < trajectory.steps[0]], new, loss=False)
        self._write(trajectory.first_step + trajectory.logged, [], loss=True)
        self._write(trajectory.steps[trajectory.logged_records], self.tracked, loss=False)

    def _write(self, steps: np.ndarray, coordinates: list[int], loss: bool) -> None:
        """The limit's and the flow's loss (or β_i and s_i of `coordinates`) at these steps' t."""
        if not len(steps):
            return
        t = self.replica.time(steps)
        for series, values in self._theory(t, coordinates, loss).items():
            inside, names, columns = values
            self.replica.tensorboard[series].scalars(steps[inside], names, columns, t=t[inside])

    def _theory(self, t: np.ndarray, coordinates: list[int], loss: bool) -> dict:
        """{series: (which of t, tags, values)} of the limit and the flow at accelerated times t."""
        out = {}
        path, exact = self.reference.path, self.reference.flow
        if path is not None:
            every = np.arange(len(t))
            if loss:  # the last saddle's loss may be exactly 0: not a point on a log axis
                values = path.loss(t)
                out["limit"] = every[values > 0], ("loss",), values[values > 0]
            elif coordinates:
                out["limit"] = every, tags("beta", coordinates) + tags("dual", coordinates), \
                    np.hstack([path.beta(t, coordinates), path.dual(t, coordinates)])
        if exact is not None:
            inside = np.flatnonzero(t <= exact.times[-1])
            if len(inside) and (loss or coordinates):
                beta, s = (v.reshape(len(inside), -1) for v in exact.at(t[inside]))
                if loss:  # below 1e-14 of L(0) the flow's loss is the solver's rounding
                    values = self._loss(beta)
                    shown = values > 1e-14 * self._loss(np.zeros((1, beta.shape[1])))[0]
                    out["flow"] = inside[shown], ("loss",), values[shown]
                else:
                    out["flow"] = inside, tags("beta", coordinates) + tags("dual", coordinates), \
                        np.hstack([beta[:, coordinates], s[:, coordinates]])
        return out

    def _loss(self, beta: np.ndarray) -> np.ndarray:
        r = beta @ self.X.T - self.y
        return (r * r).sum(axis=-1) / (2 * len(self.y))

    def end(self, task) -> None:
        if self.reference.path is None:
            return
        self.rows = compare(self.reference, self.replica, self.clock, self.threshold)
        tb = self.replica.tensorboard
        if tb is None:
            return
        step = self.replica.steps_done
        tb["run"].text("theory/saddles", markdown(self.rows), step)
        reached = [r for r in self.rows[1:] if r["t_run"] is not None]
        metrics = {"final/loss": final_loss(self.replica, self.X, self.y),
                   "final/jumps_in_limit": len(self.rows) - 1, "final/jumps_reached": len(reached)}
        if reached:
            metrics["final/max_jump_time_error"] = max(abs(r["t_run"] / r["t_limit"] - 1)
                                                       for r in reached)
        model = self.replica.model
        hparams = {"alpha": getattr(model, "alpha", float("nan")), "lr": self.replica.lr,
                   "n": len(self.y), "d": self.X.shape[1], "batch_size": task.batch_size or
                   len(self.y), "model": type(model).__name__,
                   "depth": getattr(model, "depth", 2), "replica": self.replica.name or "-"}
        tb["run"].hparams(hparams, metrics, step)

    def summary(self) -> dict:
        return {"saddles": self.rows} if self.rows else {}

    def state_dict(self) -> dict:
        return {"tracked": self.tracked, "clock": self.clock.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.tracked = list(state["tracked"])
        self.clock.load_state_dict(state["clock"])


def final_loss(replica, X: np.ndarray, y: np.ndarray) -> float:
    """L(β) at the network's parameters now."""
    r = X @ replica.model.beta().detach().cpu().double().numpy() - y
    return float(r @ r / (2 * len(y)))


def compare(reference, replica, clock: JumpClock, threshold: float) -> list[dict]:
    """One row per saddle k of the limit: its jump time in the limit, the exact flow and the run
    (each where the loss first falls to the same level), its loss and support in the limit and in
    the run. The run's are taken half-way between its jumps into and out of saddle k (for the last
    reached, half-way between its jump and the end of the run), from the run's history; its
    support is {i : |β_i| > threshold} there."""
    path, exact = reference.path, reference.flow
    t_run = [0.0] + [float(replica.time(s)) for s in clock.steps]
    t_end = float(replica.time(replica.steps_done))
    steps, betas, _ = replica.history.records()
    loss_steps, losses = replica.history.losses()
    rows = []
    for k in range(len(path)):
        row = {"k": k, "t_limit": float(path.times[k]),
               "t_flow": None, "t_run": t_run[k] if k < len(t_run) else None,
               "loss_limit": float(path.losses[k]), "loss_run": None,
               "support_limit": np.flatnonzero(path.betas[k]).tolist(), "support_run": None,
               "entering_limit": path.entering[k], "leaving_limit": path.leaving[k], "at_t": None}
        if exact is not None:
            row["t_flow"] = 0.0 if k == 0 else (None if np.isnan(exact.crossings[k - 1])
                                                 else float(exact.crossings[k - 1]))
        if row["t_run"] is not None and len(steps):
            end = t_run[k + 1] if k + 1 < len(t_run) else t_end
            middle = (row["t_run"] + end) / 2
            j = int(np.argmin(np.abs(replica.time(steps) - middle)))
            i = int(np.argmin(np.abs(replica.time(loss_steps) - middle)))
            row.update(at_t=middle, loss_run=float(losses[i]),
                       support_run=np.flatnonzero(np.abs(betas[j]) > threshold).tolist())
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The comparison as a markdown table (TensorBoard's Text dashboard renders it)."""
    def fmt(v, spec):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    head = ("| k | t limit | t flow | t run | loss limit | loss run | support limit | support run "
            "| in / out |\n|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['k']} | {fmt(r['t_limit'], '.4f')} | {fmt(r['t_flow'], '.4f')} | "
        f"{fmt(r['t_run'], '.4f')} | {fmt(r['loss_limit'], '.4e')} | {fmt(r['loss_run'], '.4e')} "
        f"| {r['support_limit']} | {'—' if r['support_run'] is None else r['support_run']} | "
        f"{change(r['entering_limit'], r['leaving_limit'])} |\n" for r in rows)


def change(entering: list[int], leaving: list[int]) -> str:
    """"+3 −1": coordinates entering and leaving the support."""
    return " ".join([f"+{i}" for i in entering] + [f"−{i}" for i in leaving])
