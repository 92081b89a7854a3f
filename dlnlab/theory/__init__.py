"""The theory every run is compared against: plain numpy/scipy, usable from a notebook."""

from dlnlab.theory.face import GeneralPositionWarning
from dlnlab.theory.saddles import SaddlePath, saddle_path

__all__ = ["GeneralPositionWarning", "SaddlePath", "saddle_path"]
