"""TensorBoard scalars for the loss, on a schedule that costs little (DESIGN.md, "Numbers that matter")."""

import math

import lightning.pytorch as pl
import numpy as np


def schedule(first_step: int, losses: np.ndarray, steps_per_t: float, every_t: float, loss_rtol: float,
             previous_loss: float | None) -> np.ndarray:
    """Offsets j (into a block of recorded losses starting at `first_step`) worth logging.

    A step is logged when it is the first at or after a multiple of `every_t` in accelerated time,
    or when log(loss) has moved into a new bin of width `loss_rtol` (so the fast drop of a jump is
    logged densely while plateaus cost almost nothing).
    """
    steps = first_step + np.arange(len(losses) + 1) - 1
    grid = np.floor(steps / (every_t * steps_per_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.floor(np.log(np.concatenate([[previous_loss if previous_loss else np.nan], losses])) / loss_rtol)
    changed = (grid[1:] != grid[:-1]) | (level[1:] != level[:-1])
    if previous_loss is None:
        changed[0] = True
    return np.flatnonzero(changed)


class LossLogger(pl.Callback):
    """Logs `train/loss` and `time/accelerated` (both clocks: the step axis and t) on a schedule."""

    def __init__(self, every_t: float = 0.02, loss_rtol: float = 0.02):
        self.every_t = every_t
        self.loss_rtol = loss_rtol
        self._last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.logger is None:
            return
        losses = pl_module.step_losses.cpu().numpy()
        steps_per_t = pl_module.model.time_scale() / pl_module.lr
        for j in schedule(pl_module.first_step, losses, steps_per_t, self.every_t, self.loss_rtol, self._last):
            step = pl_module.first_step + int(j)
            trainer.logger.log_metrics({"train/loss": float(losses[j]), "time/accelerated": step / steps_per_t}, step)
        self._last = float(losses[-1]) if math.isfinite(losses[-1]) else self._last

    def state_dict(self) -> dict:
        return {"last": self._last}

    def load_state_dict(self, state_dict: dict) -> None:
        self._last = state_dict["last"]
