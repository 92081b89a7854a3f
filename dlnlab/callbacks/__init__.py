"""Callbacks: each reads the block record the task returns and never re-runs the model; each works
with any of the others removed (docs/design.md, "Callbacks")."""

from dlnlab.callbacks.base import NetworkCallback
from dlnlab.callbacks.checkpoints import Checkpoints, LossFile
from dlnlab.callbacks.coordinates import ActiveCoordinates
from dlnlab.callbacks.effective import EffectiveAlpha
from dlnlab.callbacks.figures import Figures
from dlnlab.callbacks.plateaus import PlateauDetector, PlateauLogger
from dlnlab.callbacks.progress import AcceleratedTimeProgressBar
from dlnlab.callbacks.scalars import LossLogger
from dlnlab.callbacks.theory import TheoryOverlay

__all__ = ["AcceleratedTimeProgressBar", "ActiveCoordinates", "Checkpoints", "EffectiveAlpha",
           "Figures", "LossFile", "LossLogger", "NetworkCallback", "PlateauDetector",
           "PlateauLogger", "TheoryOverlay"]
