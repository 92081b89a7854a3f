"""Writing to TensorBoard cheaply: many scalars in one event, from any callback."""

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary


def writer(trainer: pl.Trainer):
    """The SummaryWriter of the run's TensorBoard logger, or None when there is none."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def add_scalars(summary_writer, values: dict[str, float], step: int) -> None:
    """All `values` as one event at `step`: one write instead of one per tag (add_scalar costs ~50 µs each)."""
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
    summary_writer._get_file_writer().add_summary(summary, step)
