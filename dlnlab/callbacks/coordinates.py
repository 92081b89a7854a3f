"""Active coordinates: which |β_i| are above a threshold, when that set changes, and their values."""

import lightning.pytorch as pl
import numpy as np
import torch

from dlnlab.callbacks.scalars import schedule
from dlnlab.callbacks.state import plain
from dlnlab.callbacks.tensorboard import add_scalars, tags, writer


class ActiveCoordinates(pl.Callback):
    """At the task's recorded steps: the active set {i : |β_i| > threshold}, a text event at each change
    ("t = 2.876, step 6612: +5 → {3, 5}"), and on a schedule (every `every_t` of accelerated time and
    whenever log(loss) moved by `loss_rtol`) the scalars `train/beta/i` and `train/dual/i` of the tracked
    coordinates (every coordinate ever active, at most `max_coords`), `active/count`, and the scalars of
    any reference (the theory overlay) at the same steps; a histogram of β every `hist_every_t`.
    The logged values are kept in `history` for the figures drawn at the end: per block of steps, the logged
    steps, t, loss, and β and s of the coordinates tracked then (a row per step; None for s without a dual).
    """

    def __init__(self, threshold: float = 1e-2, max_coords: int = 20, every_t: float = 0.05,
                 loss_rtol: float = 0.05, hist_every_t: float = 1.0):
        self.threshold, self.max_coords = threshold, max_coords
        self.every_t, self.loss_rtol, self.hist_every_t = every_t, loss_rtol, hist_every_t
        self.active: list[int] = []
        self.tracked: list[int] = []
        self.events: list[dict] = []
        self.history: dict[str, list] = {"step": [], "t": [], "loss": [], "beta": [], "dual": []}  # arrays per block
        self.references: list = []  # objects with scalars(times, tracked) -> [(rows, tags, values)], e.g. the theory overlay
        self._last: tuple[int, float] | None = None
        self._last_hist = -np.inf

    def track(self, coordinates) -> None:
        """Log these coordinates from now on too (the theory callback seeds the ones the limit activates)."""
        for i in coordinates:
            if i not in self.tracked and len(self.tracked) < self.max_coords:
                self.tracked.append(int(i))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        steps = np.asarray(pl_module.record_steps)
        if not len(steps):
            return
        steps_per_t = pl_module.model.time_scale() / pl_module.lr
        betas = pl_module.record_betas.cpu().numpy()
        duals = None if pl_module.record_duals is None else pl_module.record_duals.cpu().numpy()
        losses = pl_module.step_losses.cpu().numpy()[steps - pl_module.first_step]
        masks = np.abs(betas) > self.threshold
        before = np.zeros((1, masks.shape[1]), dtype=bool)
        before[0, self.active] = True
        changed = (masks != np.concatenate([before, masks[:-1]])).any(axis=1)  # vectorised: one row per record
        for j in np.flatnonzero(changed):
            self._event(trainer, int(steps[j]), steps[j] / steps_per_t, np.flatnonzero(masks[j]).tolist())
        js = np.union1d(schedule(steps, losses, steps_per_t, self.every_t, self.loss_rtol, self._last),
                        np.flatnonzero(changed))
        self._last = (int(steps[-1]), float(losses[-1]))
        tb = writer(trainer)
        if len(js):
            self._log(tb, steps[js], steps_per_t, losses[js], masks[js], betas[js], None if duals is None else duals[js])
        if (tb is not None and steps[-1] / steps_per_t - self._last_hist >= self.hist_every_t
                and np.isfinite(betas[-1]).all()):
            self._last_hist = steps[-1] / steps_per_t
            tb.add_histogram("train/beta", betas[-1], int(steps[-1]))

    def _log(self, tb, steps: np.ndarray, steps_per_t: float, losses: np.ndarray, masks: np.ndarray, betas: np.ndarray,
             duals: np.ndarray | None) -> None:
        """A block's logged steps: kept in `history` and written as scalars with the references' at the same steps."""
        key = tuple(self.tracked)
        block = {"step": steps, "t": steps / steps_per_t, "loss": losses, "beta": betas[:, list(key)],
                 "dual": None if duals is None else duals[:, list(key)]}
        for name, value in block.items():
            self.history[name].append(value)
        if tb is None:
            return
        names = ("active/count",) + tags("train/beta", key) + (tags("train/dual", key) if duals is not None else ())
        columns = [masks.sum(axis=1), block["beta"]] + ([] if duals is None else [block["dual"]])
        for reference in self.references:  # all of the block's logged times at once
            for rows, more, values in reference.scalars(block["t"], list(key)):
                if len(rows) == len(steps):  # at every step: in the same events
                    names, columns = names + more, columns + [values]
                else:
                    add_scalars(tb, steps[rows], more, values)
        add_scalars(tb, steps, names, np.column_stack(columns))

    def _event(self, trainer, step: int, t: float, active: list[int]) -> None:
        entering = sorted(set(active) - set(self.active))
        leaving = sorted(set(self.active) - set(active))
        self.active = active
        self.track(entering)
        self.events.append({"step": step, "t": t, "entering": entering, "leaving": leaving, "active": active})
        tb = writer(trainer)
        if tb is not None:
            change = " ".join([f"+{i}" for i in entering] + [f"−{i}" for i in leaving])
            tb.add_text("events/active", f"t = {t:.4g}, step {step}: {change} → {{{', '.join(map(str, active))}}}", step)

    def summary(self) -> dict:
        return {"active_events": self.events}

    def state_dict(self) -> dict:
        """Plain Python, but the history's arrays as tensors (as floats, a long run's took seconds to pickle)."""
        history = {name: [None if a is None else torch.from_numpy(a) for a in arrays] for name, arrays in self.history.items()}
        return {**plain({"active": self.active, "tracked": self.tracked, "events": self.events, "last": self._last,
                         "last_hist": self._last_hist}), "history": history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.active, self.tracked, self.events = state_dict["active"], state_dict["tracked"], state_dict["events"]
        self._last, self._last_hist = state_dict["last"], state_dict["last_hist"]
        self.history = {name: [None if a is None else a.numpy() for a in arrays]
                        for name, arrays in state_dict["history"].items()}
