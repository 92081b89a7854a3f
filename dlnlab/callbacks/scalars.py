"""TensorBoard scalars for the loss, on a schedule that costs little (DESIGN.md, "Numbers that matter")."""

import math

import lightning.pytorch as pl
import numpy as np

from dlnlab.callbacks.tensorboard import add_scalars, writer


def schedule(steps: np.ndarray, losses: np.ndarray, steps_per_t: float, every_t: float, loss_rtol: float,
             previous: tuple[int, float] | None) -> np.ndarray:
    """Indices j of (steps[j], losses[j]) worth logging, given the entry before them (`previous`).

    An entry is logged when it is the first at or after a multiple of `every_t` in accelerated time,
    or when log(loss) has moved into a new bin of width `loss_rtol` (so the fast drop of a jump is
    logged densely while plateaus cost almost nothing). The very first entry of a run is logged.
    """
    before_step, before_loss = previous if previous is not None else (-1, np.nan)
    grid = np.floor(np.concatenate([[before_step], steps]) / (every_t * steps_per_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.floor(np.log(np.concatenate([[before_loss], losses])) / loss_rtol)
    changed = (grid[1:] != grid[:-1]) | (level[1:] != level[:-1])
    if previous is None:
        changed[0] = True
    return np.flatnonzero(changed)


class LossLogger(pl.Callback):
    """Logs `train/loss` and `time/accelerated` (both clocks: the step axis and t) on a schedule."""

    def __init__(self, every_t: float = 0.02, loss_rtol: float = 0.02):
        self.every_t = every_t
        self.loss_rtol = loss_rtol
        self._last: tuple[int, float] | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tb = writer(trainer)
        if tb is None:
            return
        losses = pl_module.step_losses.cpu().numpy()
        steps = pl_module.first_step + np.arange(len(losses))
        steps_per_t = pl_module.model.time_scale() / pl_module.lr
        js = schedule(steps, losses, steps_per_t, self.every_t, self.loss_rtol, self._last)
        add_scalars(tb, steps[js], ("train/loss", "time/accelerated"), np.column_stack([losses[js], steps[js] / steps_per_t]))
        if math.isfinite(losses[-1]):
            self._last = (int(steps[-1]), float(losses[-1]))

    def state_dict(self) -> dict:
        return {"last": self._last}

    def load_state_dict(self, state_dict: dict) -> None:
        self._last = state_dict["last"]
