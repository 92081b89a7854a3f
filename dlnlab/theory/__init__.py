"""The theory every run is compared against: plain numpy/scipy, usable from a notebook.

    path = saddle_path(X, y)                      # Algorithm 1: the α → 0 limit
    f = flow(X, y, log_alpha=-300 * np.log(10), times=[1, 2, 3], levels=path.jump_levels())
    min_l1_minimizer(X, y)                        # where the limit ends
"""

from dlnlab.theory.face import GeneralPositionWarning
from dlnlab.theory.flow import Flow, FlowError, MirrorMap, flow
from dlnlab.theory.references import lasso_objective, min_l1_minimizer, ols
from dlnlab.theory.saddles import SaddlePath, saddle_path

__all__ = ["Flow", "FlowError", "GeneralPositionWarning", "MirrorMap", "SaddlePath", "flow",
           "lasso_objective", "min_l1_minimizer", "ols", "saddle_path"]
