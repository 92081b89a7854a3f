"""Callbacks: they read what the task recorded and never re-run the model."""

from dlnlab.callbacks.progress import AcceleratedTimeProgressBar
from dlnlab.callbacks.scalars import LossLogger

__all__ = ["AcceleratedTimeProgressBar", "LossLogger"]
