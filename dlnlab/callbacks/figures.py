"""Figures of each network against its theory, drawn at the end of the run: PNG files in
`<its directory>/figures/` and images in its TensorBoard run (`figures/<name>`)."""

import sys
from pathlib import Path

import numpy as np

from dlnlab.callbacks.base import NetworkCallback
from dlnlab.callbacks.theory import JumpClock
from dlnlab.reference import reference


class Figures(NetworkCallback):
    """At the end of the run (after its final checkpoint and summary.json), from the run's history:
    the loss with its jump times (`loss.png`), β_i and |β_i| (`coordinates.png`), s_i inside
    [−1, 1] (`dual.png`, for a model with a dual) and the 3-D path of the three largest
    coordinates (`path3d.png`), each with the exact flow and the limit where the model has them.
    The coordinates drawn: the limit's supports and any the run activates (|β_i| > `threshold`),
    at most `max_coords`. A figure that cannot be drawn is skipped with a warning."""

    def __init__(self, *, threshold: float, max_coords: int):
        self.threshold, self.max_coords = threshold, max_coords

    def start(self, replica, task):
        return _Figures(replica, task, self.threshold, self.max_coords)

    def on_fit_end(self, trainer, pl_module) -> None:
        if len(self.networks) > 4:
            print(f"drawing the figures of {len(self.networks)} replicas (about a second each; "
                  "skip them with ~callbacks.figures)", file=sys.stderr)
        super().on_fit_end(trainer, pl_module)


class _Figures:
    """One network's figures (see Figures)."""

    def __init__(self, replica, task, threshold: float, max_coords: int):
        self.replica, self.threshold, self.max_coords = replica, threshold, max_coords
        self.reference = reference(replica, task)
        self.clock = JumpClock(self.reference.jump_levels())
        replica.history.keep(self.reference.supports)
        self.X, self.y = task.theory_data

    def update(self, trajectory) -> None:
        self.clock.update(trajectory)

    def draw(self, task) -> None:
        from dlnlab import plots  # matplotlib: only when drawing

        replica = self.replica
        loss_steps, losses = replica.history.losses()
        steps, betas, duals = replica.history.records()
        if not len(steps):
            return
        path, exact = self.reference.path, self.reference.flow
        t, loss_t = replica.time(steps), replica.time(loss_steps)
        finite = np.isfinite(betas).all(axis=1)
        tracked = self._tracked(betas[finite])
        flow_t = flow_betas = flow_loss = None
        if exact is not None and finite.any():
            flow_t = np.linspace(0, min(exact.times[-1], t[finite].max()), 1500)
            flow_betas, _ = exact.at(flow_t)
            r = flow_betas @ self.X.T - self.y
            flow_loss = (r * r).sum(axis=1) / (2 * len(self.y))
        title = plots.title(replica)
        jumps = [float(replica.time(s)) for s in self.clock.steps]
        keep = np.isfinite(losses)
        figures = {
            "loss": plots.loss_figure(loss_t[keep], losses[keep], path, flow_t, flow_loss, jumps,
                                      title),
            "coordinates": plots.coordinates_figure(t[finite], betas[finite][:, tracked], tracked,
                                                    path, flow_t, flow_betas, title),
            "path3d": plots.path3d_figure(betas[finite][:, tracked], tracked, path, title),
        }
        if duals is not None:
            figures["dual"] = plots.dual_figure(t[finite], duals[finite][:, tracked], tracked,
                                                path, title)
        out = Path(replica.directory) / "figures"
        out.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            if figure is None:
                continue
            image = plots.render(figure)
            plots.save(image, out / f"{name}.png")
            if replica.tensorboard is not None:
                replica.tensorboard["run"].image(f"figures/{name}", image, replica.steps_done)

    def _tracked(self, betas: np.ndarray) -> list[int]:
        """The limit's supports, then the coordinates the run activated, largest first."""
        limit = self.reference.supports
        peak = np.abs(betas).max(axis=0) if len(betas) else np.zeros(betas.shape[1])
        run = [int(i) for i in np.argsort(-peak) if peak[i] > self.threshold and i not in limit]
        kept = set(self.replica.history.kept)
        return [i for i in limit + run if i in kept][:self.max_coords]

    def state_dict(self) -> dict:
        return {"clock": self.clock.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.clock.load_state_dict(state["clock"])
