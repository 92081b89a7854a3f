"""A progress bar in optimiser steps, showing accelerated time."""

from lightning.pytorch.callbacks import TQDMProgressBar


class AcceleratedTimeProgressBar(TQDMProgressBar):
    """Counts optimiser steps against the run's total and shows t (accelerated time) and, for a
    replica run, how many networks still train."""

    def on_train_epoch_start(self, trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        self.train_progress_bar.reset(total=trainer.lightning_module.max_steps)
        self.train_progress_bar.set_description("steps")

    def get_metrics(self, trainer, pl_module) -> dict:
        return pl_module.progress()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.is_enabled:  # once per block of steps: cheap next to the block itself
            bar = self.train_progress_bar
            bar.update(trainer.global_step - bar.n)
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
