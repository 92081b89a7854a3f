"""Input checks shared by training and theory: one clear error naming the value and the fix."""

import math
import sys
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np


class ConfigError(ValueError):
    """Bad configuration or data, detected before any training work is done."""


@contextmanager
def exit_on_config_error(program: str):
    """For console scripts: a ConfigError becomes one line on stderr and exit status 2, no
    traceback."""
    try:
        yield
    except ConfigError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(2)


HEADROOM = 1e8  # how far below float64's largest number ‖X‖_F² = Σ X_ij² must stay
RESOLUTION = 1e32  # how far above float64's smallest normal number L(0) and XᵀX/n must stay


def scale_bounds(n: int, d: int) -> tuple[float, float]:
    """(lo, hi): the range that the largest |entry| of X and of y must lie in, for n × d data.

    hi = sqrt(max / (HEADROOM·n·d)), max ≈ 1.8e308 the largest float64: every entry of X and y
    at most hi gives Σ_i X_ij X_ik, Σ_i X_ij y_i, ‖y‖² ≤ n·hi² and ‖X‖₂² ≤ ‖X‖_F² ≤ n·d·hi²
    = max/HEADROOM, so XᵀX/n, Xᵀy/n, L(0) = ‖y‖²/2n and λ_max(XᵀX/n) are finite even before the
    division by n, with a factor 1e8 to spare: room for the loss to rise to the divergence factor
    (1e4 by default) before a run stops, and for products of XᵀX with β of the solution's size.
    hi ≈ 1.3e150 for n = d = 1, 4.7e148 for 20 × 40, 1.3e145 for 1e5 × 1e5.

    lo = sqrt(2n · tiny · RESOLUTION), tiny ≈ 2.2e-308 the smallest normal float64: a largest
    |y| of at least lo gives L(0) ≥ max|y|²/2n ≥ tiny·1e32, and a largest |X| of at least lo
    gives a largest diagonal entry of XᵀX/n ≥ tiny·1e32, so the loss can fall by float64's
    resolution squared (ε² ≈ 5e-32, the rounding floor of a fit) and still be a normal number.
    lo ≈ 2.1e-138·sqrt(n).
    """
    big, tiny = np.finfo(np.float64).max, np.finfo(np.float64).tiny
    return math.sqrt(2 * n * tiny * RESOLUTION), math.sqrt(big / (HEADROOM * n * d))


def check_xy(X, y, source: str = "data", nonzero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """X as an (n, d) and y as an (n,) finite float64 array, or one ConfigError naming the problem.

    Accepted: real numbers of any width (float, int, bool as 0/1); y of shape (n, 1) is taken as
    (n,); a complex array whose imaginary part is exactly zero is taken as its real part, one with
    a non-zero imaginary part is refused (dropping it would change the data). Refused: strings,
    dates and other non-numbers, NaN and inf, and data outside `scale_bounds(n, d)`: a non-zero
    X or y whose largest |entry| is below lo (XᵀX/n or L(0) would underflow) or any entry above
    hi (they would overflow); an X or y that is exactly zero is in range (the theory handles it).
    nonzero=True (the data sources ask for it) also refuses y = 0 (L(0) = 0, β = 0 already fits:
    nothing to learn) and X = 0 (the gradient Xᵀ(Xβ − y)/n is 0: the loss cannot move).
    """
    X, y = _real_array(X, "X", source), _real_array(y, "y", source)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if X.ndim != 2:
        hint = ": for one feature use X.reshape(-1, 1)" if X.ndim == 1 else ""
        raise ConfigError(f"{source}: X must be 2-D (n samples × d features), got shape {X.shape}"
                          f"{hint}")
    if y.ndim != 1:
        hint = ""
        if y.ndim == 2 and y.shape[0] == 1:
            hint = ": if it is one row of labels, use y.ravel()"
        elif y.ndim == 2:
            hint = f": y with {y.shape[1]} columns is several targets: train on one, e.g. y[:, 0]"
        raise ConfigError(f"{source}: y must be 1-D (n,) or (n, 1), one label per row of X, got "
                          f"shape {y.shape}{hint}")
    if X.shape[0] != y.shape[0]:
        raise ConfigError(f"{source}: X has {X.shape[0]} rows but y has {y.shape[0]} entries: "
                          "they must match")
    if X.size == 0:
        raise ConfigError(f"{source}: the data is empty (X has shape {X.shape}): give at least "
                          "one sample and one feature")
    for name, a in (("X", X), ("y", y)):
        bad = ~np.isfinite(a)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ConfigError(f"{source}: {name} has {int(bad.sum())} NaN, inf or non-numeric "
                              f"value(s), the first at index {where}: remove or impute them")
    _check_scale(X, y, source, nonzero)
    return X, y


def _real_array(a, name: str, source: str) -> np.ndarray:
    """`a` as a float64 array: complex only if its imaginary part is 0, no strings or dates."""
    try:
        a = np.asarray(a)
        if a.dtype.kind == "O":  # Python objects (e.g. lists mixing types): numbers or nothing
            a = np.asarray(a.tolist())
            if a.dtype.kind == "O":
                a = a.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: X and y must be numeric arrays ({name}: {e})") from None
    if a.dtype.kind == "c":
        imaginary = np.flatnonzero(a.imag)
        if len(imaginary):
            i = np.unravel_index(imaginary[0], a.shape)
            where = ", ".join(str(int(j)) for j in i)
            raise ConfigError(f"{source}: {name} is complex ({a.dtype}) with {len(imaginary)} "
                              f"non-zero imaginary part(s), the first {name}[{where}] = {a[i]}: "
                              f"give real data ({name}.real or abs({name}), whichever is meant)")
        a = a.real
    if a.dtype.kind not in "biuf":
        raise ConfigError(f"{source}: {name} holds {a.dtype} values, not numbers: give X and y as "
                          f"float arrays (e.g. {name}.astype(float) if they are numbers as text)")
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:  # long double: finite there, inf in float64?
        with np.errstate(over="ignore", under="ignore"):
            narrow = a.astype(np.float64)
        wide = np.isfinite(a) & ~np.isfinite(narrow)
        if wide.any():
            where = tuple(int(j) for j in np.argwhere(wide)[0])
            value = np.format_float_scientific(a[where], precision=2)
            raise ConfigError(f"{source}: {name}{list(where)} = {value} ({a.dtype}) is beyond "
                              f"float64's range: rescale the data")
        return narrow
    return np.asarray(a, dtype=np.float64)


def _check_scale(X: np.ndarray, y: np.ndarray, source: str, nonzero: bool) -> None:
    """The largest |X| and |y| within `scale_bounds`; X = 0 or y = 0 refused when `nonzero`."""
    n, d = X.shape
    lo, hi = scale_bounds(n, d)
    # max(max, −min), not abs(a).max(): no temporary the size of X (a run's peak memory)
    largest = {name: float(max(a.max(), -a.min())) for name, a in (("X", X), ("y", y))}
    for name, a in (("X", X), ("y", y)):
        if lo <= largest[name] <= hi:
            continue
        index = np.unravel_index(int(np.argmax(np.abs(a))), a.shape)
        entry = f"{name}[{', '.join(str(int(i)) for i in index)}]"
        other = largest["y" if name == "X" else "X"]
        if largest[name] == 0:
            if nonzero and name == "y":
                raise ConfigError(f"{source}: y is all zero: L(0) = 0 and β = 0 already fits, "
                                  "nothing to learn: give non-zero labels")
            if nonzero:
                raise ConfigError(f"{source}: X is all zero: the gradient Xᵀ(Xβ − y)/n is 0 and "
                                  "the loss cannot move: give non-zero features")
        elif largest[name] > hi:
            factor = 10.0 ** math.ceil(math.log10(largest[name]))
            raise ConfigError(f"{source}: {entry} = {a[index]:.3g} is too large: for n={n}, d={d} "
                              f"every |X|, |y| must be ≤ {hi:.3g} so that XᵀX/n, Xᵀy/n and "
                              f"‖y‖²/2n stay finite in float64: rescale the data, e.g. "
                              f"{_rescaling(name, 1 / factor, other, lo, hi)}")
        elif largest[name] < lo:
            factor = 10.0 ** -math.floor(math.log10(largest[name]))
            raise ConfigError(f"{source}: the largest |{name}| is {largest[name]:.3g} (at "
                              f"{entry}), too small: for n={n} it must be ≥ {lo:.3g} so that "
                              f"XᵀX/n and L(0) = ‖y‖²/2n stay 1e32 above float64's smallest "
                              f"normal number: "
                              f"rescale the data, e.g. {_rescaling(name, factor, other, lo, hi)}")


def _rescaling(name: str, factor: float, other: float, lo: float, hi: float) -> str:
    """Advice: scale both X and y by `factor` (β unchanged) if the other array stays within
    [lo, hi] then, else only `name` (β changes by the factor)."""
    verb, shown = ("multiply", factor) if factor > 1 else ("divide", 1 / factor)
    if other == 0 or lo <= other * factor <= hi:
        return f"{verb} X and y by {shown:.0e} (the same factor leaves β unchanged)"
    effect = "divides" if (name == "X") == (factor > 1) else "multiplies"
    return f"{verb} {name} alone by {shown:.0e} (which {effect} β by it)"


# The checks of model parameters by name, shared by the built-in models and, before a run starts,
# by every model that takes such a parameter (dlnlab.preflight): torch-free, so they answer at once.

SMALLEST_ALPHA = {"float64": 1e-150, "float32": 1e-18}  # docs/theory.md §8


def check_alpha(alpha) -> float:
    """alpha as a float in (0, 1): the theory is about α → 0, and log(1/α) must be > 0."""
    if (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha)
            or not 0 < alpha < 1):
        raise ConfigError(f"alpha={alpha!r} must be a number in (0, 1), the initialisation scale "
                          "(e.g. alpha=1e-10)")
    return float(alpha)


def check_depth(depth) -> int:
    """depth as an integer ≥ 2."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ConfigError(f"depth={depth!r} must be an integer ≥ 2 (2 is the shallow network, "
                          "e.g. depth=3)")
    return depth


def check_dtype(dtype, alpha: float | None = None) -> str:
    """dtype as a name ("float64" or "float32"); with `alpha`, also that this dtype can hold the run
    at that α (at saturation u − v ∝ α², which must stay a normal number: docs/theory.md §8)."""
    if dtype not in SMALLEST_ALPHA:
        raise ConfigError(f"dtype={dtype!r} is unknown: use 'float64' (default) or 'float32'")
    smallest = SMALLEST_ALPHA[dtype]
    if alpha is not None and alpha < smallest:
        fix = "use dtype=float64" if dtype == "float32" else \
            "use dlnlab.theory.flow, which takes log α,"
        raise ConfigError(f"alpha={alpha!r} is too small for {dtype}, whose smallest safe α is "
                          f"{smallest:g} (u − v ∝ α² underflows): {fix} or alpha ≥ {smallest:g}")
    return dtype


def init_shape(shape, d: int, seed=0) -> np.ndarray:
    """The initialisation shape a (α_i = α·a_i, docs/theory.md §2), as a positive vector:
    "uniform" (all ones), "random" (uniform on [0.5, 1.5], from `seed`), or d positive numbers."""
    if isinstance(shape, str):
        if shape == "uniform":
            return np.ones(d)
        if shape == "random":
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"shape_seed={seed!r} must be a non-negative integer")
            return np.random.default_rng(seed).uniform(0.5, 1.5, size=d)
        raise ConfigError(f"shape={shape!r} is unknown: use 'uniform', 'random' or a list of {d} "
                          "positive numbers")
    if not isinstance(shape, Sequence):
        raise ConfigError(f"shape={shape!r} is neither a name nor a list: use 'uniform', 'random' "
                          "or a list")
    a = np.asarray(list(shape), dtype=float)
    if a.shape != (d,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ConfigError(f"shape={list(shape)!r} must be {d} finite positive numbers, one per "
                          f"coordinate (d={d})")
    return a
