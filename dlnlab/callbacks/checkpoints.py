"""Checkpoints on a schedule in accelerated time and wall time, at the start and the end of a run;
the loss file."""

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Checkpoint

from dlnlab.callbacks.base import NetworkCallback
from dlnlab.files import remove, write_error


class Checkpoints(Checkpoint):
    """`checkpoints/last.ckpt` at the start of training, then every `every_t` of accelerated time
    (the longest network's) but at most every `every_s` seconds (a checkpoint costs tens of
    milliseconds, a unit of t of a small problem may cost less: a kill loses at most every_s of
    work), and at the end of training (an interrupted run included), unless every network
    diverged: the last checkpoint before then stays. The file is replaced atomically, so a kill
    or a full disk while writing leaves the previous one. Being a Checkpoint, Lightning runs it
    after the other callbacks, so their state is the one saved."""

    def __init__(self, *, every_t: float, every_s: float):
        self.every_t, self.every_s = every_t, every_s
        self._last_t = 0.0
        self._last_s = time.monotonic()

    def path(self, trainer) -> Path:
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_s = time.monotonic()
        self._save(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        t = max(replica.time(replica.steps_done) for replica in pl_module.replicas)
        running = any(replica.status == "running" for replica in pl_module.replicas)
        if running and t - self._last_t >= self.every_t and \
                time.monotonic() - self._last_s >= self.every_s:
            self._last_t, self._last_s = t, time.monotonic()
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if not all(replica.status == "diverged" for replica in pl_module.replicas):
            self._save(trainer)

    def _save(self, trainer) -> None:
        """Write last.partial, then rename it over last.ckpt; a failed write (a full disk, a
        read-only folder) is one line naming last.ckpt and the cause, and leaves the previous
        checkpoint as it was."""
        path = self.path(trainer)
        partial = path.with_suffix(".partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(partial, weights_only=False)
            os.replace(partial, path)
        except OSError as e:
            remove(partial)
            raise write_error(path, e) from None

    def state_dict(self) -> dict:
        return {"last_t": self._last_t}

    def load_state_dict(self, state_dict: dict) -> None:
        self._last_t = state_dict["last_t"]


class LossFile(NetworkCallback):
    """Every step's loss, appended to `losses.f64` in each network's directory (raw float64:
    np.fromfile). The file holds the steps from the start of this fit; a resumed run writes its
    own."""

    def start(self, replica, task):
        return _LossFile(Path(replica.directory) / "losses.f64")


class _LossFile:
    def __init__(self, path: Path):
        self.path = path

    def update(self, trajectory) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(trajectory.losses.astype("<f8").tobytes())
        except OSError as e:
            raise write_error(self.path, e) from None
