"""Callbacks: they read what the task recorded and never re-run the model."""

from dlnlab.callbacks.checkpoints import Checkpoints, LossFile
from dlnlab.callbacks.coordinates import ActiveCoordinates
from dlnlab.callbacks.plateaus import PlateauDetector, PlateauLogger
from dlnlab.callbacks.progress import AcceleratedTimeProgressBar
from dlnlab.callbacks.scalars import LossLogger
from dlnlab.callbacks.theory import TheoryOverlay

__all__ = ["AcceleratedTimeProgressBar", "ActiveCoordinates", "Checkpoints", "LossFile", "LossLogger",
           "PlateauDetector", "PlateauLogger", "TheoryOverlay"]
