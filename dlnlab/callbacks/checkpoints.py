"""Checkpoints on a schedule in accelerated time and wall time, at the end, and when a run is stopped; the loss file."""

import os
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Checkpoint


class Checkpoints(Checkpoint):
    """`checkpoints/last.ckpt` every `every_t` of accelerated time but at most every `every_s` seconds
    (a checkpoint costs tens of milliseconds, a unit of t on a small problem may cost less: a kill then
    loses at most every_s of work), and at the end of training (a stopped run included), never with
    diverged parameters: the last good one stays. The file is replaced atomically, so a kill while
    writing leaves the previous one. Being a Checkpoint, Lightning runs it after the other callbacks,
    so their state (plateaus, active sets) is the one saved."""

    def __init__(self, every_t: float = 1.0, every_s: float = 30.0):
        if not (every_t > 0 and every_s >= 0):
            raise ValueError(f"every_t={every_t!r} must be a positive accelerated time, every_s={every_s!r} ≥ 0 seconds")
        self.every_t, self.every_s = every_t, every_s
        self._last_t = 0.0
        self._last_s = time.monotonic()

    def path(self, trainer) -> Path:
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        t = pl_module.accelerated_time(trainer.global_step)
        if (pl_module.status == "running" and t - self._last_t >= self.every_t
                and time.monotonic() - self._last_s >= self.every_s):
            self._last_t, self._last_s = t, time.monotonic()
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.status != "diverged":
            self._save(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        """Lightning ends a SIGTERM'd fit with an exception, after the task stopped at a block boundary."""
        if pl_module.status == "interrupted":
            self._save(trainer)

    def _save(self, trainer) -> None:
        path = self.path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        trainer.save_checkpoint(partial, weights_only=False)
        os.replace(partial, path)

    def state_dict(self) -> dict:
        return {"last_t": self._last_t}

    def load_state_dict(self, state_dict: dict) -> None:
        self._last_t = state_dict["last_t"]


class LossFile(pl.Callback):
    """Every step's loss, appended to `losses.f64` in the run directory (raw float64: np.fromfile).
    The file holds the steps from the start of this fit; a resumed run writes its own."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(Path(trainer.default_root_dir) / "losses.f64", "ab") as f:
            f.write(pl_module.step_losses.cpu().numpy().astype(np.float64).tobytes())
