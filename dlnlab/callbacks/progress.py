"""A progress bar in optimiser steps, showing accelerated time and loss."""

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import _update_n


class AcceleratedTimeProgressBar(TQDMProgressBar):
    """Counts optimiser steps against the run's total and shows t (accelerated time) and the loss."""

    def on_train_epoch_start(self, trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        self.train_progress_bar.total = trainer.max_steps
        self.train_progress_bar.set_description("steps")

    def get_metrics(self, trainer, pl_module) -> dict:
        return pl_module.progress()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.is_enabled:  # once per block of steps: cheap next to the block itself
            _update_n(self.train_progress_bar, trainer.global_step)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
