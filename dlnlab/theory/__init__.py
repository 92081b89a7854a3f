"""The theory every run is compared against: plain numpy/scipy, usable from a notebook.

    path = saddle_path(X, y)                      # Algorithm 1: the α → 0 limit
    f = flow(X, y, log_alpha=-300 * np.log(10), times=[1, 2, 3], levels=path.jump_levels())
    min_l1_minimizer(X, y)                        # where the limit ends

Non-negative networks β = w^L (docs/nonnegative.md):

    path = saddle_path(X, y, kind="nonnegative")  # the one-sided limit
    f = flow(X, y, log_alpha, times, depth=2, nonnegative=True)
    min_sum_nonnegative_minimizer(X, y)           # where it ends

Large steps and SGD (docs/large-steps.md):

    hyperbolic_minimizer(X, y, effective_alpha(p, q))  # where a run with those (p, q) ends
"""

from dlnlab.theory.endpoint import effective_alpha, hyperbolic_minimizer
from dlnlab.theory.face import GeneralPositionWarning
from dlnlab.theory.flow import Flow, FlowError, MirrorMap, flow
from dlnlab.theory.references import (
    lasso_objective,
    min_l1_minimizer,
    min_sum_nonnegative_minimizer,
    ols,
)
from dlnlab.theory.saddles import SaddlePath, saddle_path

__all__ = ["Flow", "FlowError", "GeneralPositionWarning", "MirrorMap", "SaddlePath",
           "effective_alpha", "flow", "hyperbolic_minimizer", "lasso_objective", "min_l1_minimizer",
           "min_sum_nonnegative_minimizer", "ols", "saddle_path"]
