"""Active coordinates: which |β_i| are above a threshold, when that set changes, their values."""

import numpy as np

from dlnlab.callbacks.base import Milestones, NetworkCallback
from dlnlab.reference import reference


def tags(prefix: str, coordinates: list[int]) -> tuple[str, ...]:
    return tuple(f"{prefix}/{i}" for i in coordinates)


class ActiveCoordinates(NetworkCallback):
    """At each recorded step, the active set {i : |β_i| > threshold}, with a text event at each
    change ("t = 2.876, step 6612: +5 → {3, 5}", `events/active`). At the steps the record marks
    worth logging, in the network's `run` series: `beta/i` and `dual/i` of the tracked coordinates
    (those the network's limit activates, dlnlab.reference, then every one the run activates, at
    most `max_coords`; one that becomes active late is written from t = 0, from the run's
    history) and `active/count`, each also against accelerated time (`vs_t/…`); a histogram of
    β (`beta`) every `hist_every_t` of accelerated time up to 10·`hist_every_t`, then every 10% of
    t."""

    def __init__(self, *, threshold: float, max_coords: int, hist_every_t: float):
        self.threshold, self.max_coords, self.hist_every_t = threshold, max_coords, hist_every_t

    def start(self, replica, task):
        coordinates = _Coordinates(replica, self.threshold, self.max_coords, self.hist_every_t)
        coordinates.tracked = reference(replica, task).supports[:self.max_coords]
        replica.history.keep(coordinates.tracked)
        return coordinates


class _Coordinates:
    """One network's active coordinates (see ActiveCoordinates)."""

    def __init__(self, replica, threshold: float, max_coords: int, hist_every_t: float):
        self.replica, self.threshold = replica, threshold
        self.max_coords, self.histograms = max_coords, Milestones(hist_every_t)
        self.active: list[int] = []
        self.tracked: list[int] = []
        self.events: list[dict] = []

    def update(self, trajectory) -> None:
        if not len(trajectory.steps):
            return
        steps, betas = trajectory.steps, trajectory.betas
        masks = np.abs(betas) > self.threshold
        before = np.zeros((1, masks.shape[1]), dtype=bool)
        before[0, self.active] = True
        changed = (masks != np.concatenate([before, masks[:-1]])).any(axis=1)
        new = []
        for j in np.flatnonzero(changed):
            new += self._event(int(steps[j]), np.flatnonzero(masks[j]).tolist())
        tb = self.replica.tensorboard
        if tb is None:
            return
        if new:
            self._backfill(tb, new, first=steps[trajectory.logged_records[:1]])
        rows = trajectory.logged_records
        self._write(tb, steps[rows], masks[rows].sum(axis=1), betas[rows],
                    trajectory.duals, self.tracked)
        self._histograms(tb, steps, betas)

    def _write(self, tb, steps, counts, betas, duals, coordinates) -> None:
        t = self.replica.time(steps)
        names = tags("beta", coordinates) + (() if duals is None else tags("dual", coordinates))
        columns = [betas[:, coordinates]] + ([] if duals is None else [duals[:, coordinates]])
        if counts is not None:
            names, columns = ("active/count",) + names, [counts[:, None]] + columns
        tb["run"].scalars(steps, names, np.hstack(columns), t=t)

    def _backfill(self, tb, coordinates: list[int], first) -> None:
        """The history of coordinates tracked from now on, from t = 0 up to this block's records
        (where the history kept them: when d > History.MAX_D, from when they were first kept)."""
        history = self.replica.history
        coordinates = [i for i in coordinates if i in history.kept]
        steps, betas, duals = history.records()
        before = steps < (first[0] if len(first) else np.inf)
        before &= np.isfinite(betas[:, coordinates]).all(axis=1)
        if coordinates and before.any():
            self._write(tb, steps[before], None, betas[before],
                        None if duals is None else duals[before], coordinates)

    def _histograms(self, tb, steps, betas) -> None:
        """A histogram of β at the records due (Milestones: every hist_every_t of t, then 10%)."""
        for j in self.histograms.due(self.replica.time(steps),
                                     lambda j: np.isfinite(betas[j]).all()):
            tb["run"].histogram("beta", betas[j], int(steps[j]))

    def _event(self, step: int, active: list[int]) -> list[int]:
        """Record a change of the active set; return the coordinates tracked from now on."""
        entering = sorted(set(active) - set(self.active))
        leaving = sorted(set(self.active) - set(active))
        self.active = active
        t = float(self.replica.time(step))
        self.events.append({"step": step, "t": t, "entering": entering, "leaving": leaving,
                            "active": active})
        new = [i for i in entering if i not in self.tracked][:self.max_coords - len(self.tracked)]
        self.tracked += new
        self.replica.history.keep(new)
        if self.replica.tensorboard is not None:
            change = " ".join([f"+{i}" for i in entering] + [f"−{i}" for i in leaving])
            self.replica.tensorboard["run"].text(
                "events/active", f"t = {t:.4g}, step {step}: {change} → "
                f"{{{', '.join(map(str, active))}}}", step)
        return new

    def summary(self) -> dict:
        return {"active_events": self.events}

    def state_dict(self) -> dict:
        return {"active": self.active, "tracked": self.tracked, "events": self.events,
                "histograms": self.histograms.count}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.tracked = list(state["active"]), list(state["tracked"])
        self.events, self.histograms.count = list(state["events"]), state["histograms"]
