"""A run's preflight: its data and each replica's settings, every value checked before any work and
before torch or Lightning is imported, so that a configuration error answers at once with one line
naming the key, the value and the fix (docs/design.md, "Starting a run").

Model parameters are checked by name whatever the model (`alpha`, `depth`, `dtype`, `shape`,
`shape_seed`: a user's model that takes them gets the built-in models' checks), and a built-in
model's run length (its clock is known without building it) against MAX_STEPS.
"""

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dlnlab import checks
from dlnlab.checks import ConfigError
from dlnlab.clocks import symmetric_clock, uv_clock
from dlnlab.config import CALLBACKS, TheoryConfig
from dlnlab.replicas import expand

MAX_STEPS = 10**9  # beyond this (hours to days), a run is almost surely a misconfigured clock
MAX_STEP_T = 1.0  # a step covering more accelerated time than this jumps over the theory's events
MIN_STEPS = 10  # ... and with fewer such steps to run.t_max (10% overshoot at least): refused
FLOW_RESOLUTION = 1e-12  # the smallest α^(L−2) the exact flow resolves (dlnlab.theory.flow)
CLOCKS = {  # the built-in models' clocks, from their configuration
    "dlnlab.models.UVNetwork": lambda m: uv_clock(m.alpha),
    "dlnlab.models.SymmetricNetwork": lambda m: symmetric_clock(m.alpha, m.depth),
    "dlnlab.models.PositiveNetwork": lambda m: symmetric_clock(m.alpha, m.depth),
}


@dataclass
class RunSpec:
    """What a run will do: the output folder, the data, and (name, config) per replica ("" and
    the run's own config for a single run)."""

    output_dir: Path
    X: np.ndarray
    y: np.ndarray
    replicas: list[tuple[str, DictConfig]]


def build(node: DictConfig, key: str, **kwargs):
    """Instantiate a config node; a missing value or a ConfigError inside comes out naming the
    key."""
    from hydra.errors import InstantiationException

    missing = sorted(OmegaConf.missing_keys(node))  # full keys, e.g. data.path
    if missing:
        raise ConfigError(f"{missing[0]} has no value: set it on the command line, e.g. "
                          f"{missing[0]}=<value>")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise ConfigError(f"{key}.{e.__cause__}") from None
        raise


def preflight(cfg: DictConfig) -> RunSpec:
    """Check everything a run needs before it starts; return its RunSpec."""
    out = output_dir(cfg)
    X, y = build(cfg.data, "data")
    replicas = expand(cfg)
    for _, replica in replicas:
        check_model(replica.model, X.shape[1])
        check_run(replica, X.shape[0])
        check_length(replica)
    check_callbacks(cfg)
    return RunSpec(out, X, y, replicas)


def output_dir(cfg: DictConfig) -> Path:
    """Hydra's run directory under dlnlab-train; run.output_dir when train() is called from
    Python."""
    if HydraConfig.initialized():
        if cfg.run.output_dir is not None:
            raise ConfigError(f"run.output_dir={cfg.run.output_dir} is for train() called from "
                              "Python: dlnlab-train writes where Hydra says, so pass "
                              "hydra.run.dir=<folder> (hydra.sweep.dir=<folder> with -m)")
        return Path(HydraConfig.get().runtime.output_dir)
    if cfg.run.output_dir is None:
        raise ConfigError("run.output_dir is not set: outside dlnlab-train, pass "
                          "run.output_dir=<folder>")
    return Path(cfg.run.output_dir)


def check_model(model: DictConfig, d: int) -> None:
    """The parameters any model may take, checked by name (a list already split into replicas)."""
    def check(name, fn, *args):
        if name in model:
            try:
                fn(model[name], *args)
            except ConfigError as e:
                raise ConfigError(f"model.{e}") from None

    check("alpha", checks.check_alpha)
    check("depth", checks.check_depth)
    alpha = model.get("alpha") if model.get("depth", 2) == 2 else None
    check("dtype", checks.check_dtype, alpha if isinstance(alpha, float) else None)
    if "shape" in model:
        shape = model.shape if isinstance(model.shape, str) else OmegaConf.to_container(model.shape)
        check("shape_seed", lambda seed: checks.init_shape(shape, d, seed))


def check_run(cfg: DictConfig, n: int) -> None:
    """Range checks the schema's types cannot express; each names the key, the value and the fix."""
    optim, run = cfg.optim, cfg.run
    if optim.method not in ("gd", "sgd"):
        raise ConfigError(f"optim.method={optim.method!r} is unknown: use optim=gd or optim=sgd")
    if not (math.isfinite(optim.lr) and optim.lr > 0):
        raise ConfigError(f"optim.lr={optim.lr!r} must be a positive step size (e.g. "
                          "optim.lr=1e-2)")
    if optim.method == "sgd" and not (optim.batch_size is not None and 1 <= optim.batch_size <= n):
        raise ConfigError(f"optim.batch_size={optim.batch_size!r} must be between 1 and n={n} "
                          "for SGD")
    if optim.method == "gd" and optim.batch_size is not None:
        raise ConfigError(f"optim.batch_size={optim.batch_size!r} is for SGD: use optim=sgd, or "
                          "drop it for GD")
    if not (math.isfinite(run.t_max) and run.t_max > 0):
        raise ConfigError(f"run.t_max={run.t_max!r} must be a positive accelerated time "
                          "(e.g. run.t_max=10)")
    if run.steps_per_call is not None and run.steps_per_call < 1:
        raise ConfigError(f"run.steps_per_call={run.steps_per_call!r} must be ≥ 1")
    for key in ("record_every_t", "log_every_t", "log_loss_rtol"):
        if not (math.isfinite(run[key]) and run[key] > 0):
            raise ConfigError(f"run.{key}={run[key]!r} must be a positive number")
    if not run.divergence_factor > 1:
        raise ConfigError(f"run.divergence_factor={run.divergence_factor!r} must be > 1 (a loss "
                          "this many times L(0) counts as diverged)")
    if run.num_threads is not None and run.num_threads < 1:
        raise ConfigError(f"run.num_threads={run.num_threads!r} must be ≥ 1 (or null: 1 for small "
                          "problems, all cores for large ones)")
    if run.engine not in ("auto", "fused", "torch"):
        raise ConfigError(f"run.engine={run.engine!r} is unknown: use auto (default), fused or "
                          "torch")
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path!r}: no such checkpoint (runs save "
                          "<run dir>/checkpoints/last.ckpt)")
    trainer = cfg.trainer
    if trainer.max_steps < -1 or trainer.max_steps == 0:
        raise ConfigError(f"trainer.max_steps={trainer.max_steps!r} must be a positive step cap, "
                          "or -1 for none")
    if trainer.profiler not in (None, "simple"):
        raise ConfigError(f"trainer.profiler={trainer.profiler!r} is unknown: use "
                          "trainer.profiler=simple (the time of every hook), or null for none")
    if trainer.devices not in (1, "1"):
        raise ConfigError(f"trainer.devices={trainer.devices!r}: dlnlab trains on one device (a "
                          "stack of replicas shares it): use trainer.devices=1, and replicas "
                          "(model.alpha=[...]) or a sweep (-m) for more networks")
    if trainer.accelerator not in ("auto", "cpu", "gpu", "cuda"):
        raise ConfigError(f"trainer.accelerator={trainer.accelerator!r} is unknown: use auto, cpu "
                          "or gpu")
    try:
        TheoryConfig(**OmegaConf.to_container(cfg.theory)).check()
    except ConfigError as e:
        raise ConfigError(f"theory.{e}") from None


def steps_to(cfg: DictConfig, clock: float) -> int:
    """The steps that reach run.t_max with this clock, capped by trainer.max_steps; refused beyond
    MAX_STEPS (a misconfigured clock, most likely)."""
    steps = math.ceil(cfg.run.t_max * clock / cfg.optim.lr)
    if cfg.trainer.max_steps > 0:
        return min(steps, cfg.trainer.max_steps)
    if steps > MAX_STEPS:
        raise ConfigError(f"run.t_max={cfg.run.t_max:g} needs {steps:.3g} steps (T_α = "
                          f"{clock:.3g}, optim.lr={cfg.optim.lr:g}): use a larger model.alpha, a "
                          "larger step, a shorter run.t_max, or cap it with trainer.max_steps")
    return steps


def check_length(cfg: DictConfig) -> None:
    """A built-in model's run length, from its clock (another model's: once it is built): at most
    MAX_STEPS steps (unless trainer.max_steps caps them); a step longer than MAX_STEP_T of
    accelerated time refused if it reaches run.t_max in fewer than MIN_STEPS steps (α = 0.999:
    2 steps of 10 units of t, the result follows no flow), else warned (large steps on purpose:
    the divergence tests, t_max = 1e4 at 2.9 units a step); at depth ≥ 3, an α
    whose exact flow float64 can solve (dlnlab.theory.flow.MirrorMap: the run's theory overlay
    would fail after its first block). The advice names the α that would do, from the clock (at
    depth ≥ 3 it grows like α^−(L−2): α = 0.5 is small at depth 50)."""
    clock_of = CLOCKS.get(cfg.model.get("_target_"))
    if clock_of is None:
        return
    model, t_max, lr = cfg.model, cfg.run.t_max, cfg.optim.lr
    depth = model.get("depth", 2)

    def clock(alpha: float) -> float:
        return clock_of(SimpleNamespace(alpha=alpha, depth=depth))

    T = clock(model.alpha)
    at = f"model.alpha={model.alpha:g}" + (f" at model.depth={depth}" if "depth" in model else "")
    solvable = FLOW_RESOLUTION ** (1 / (depth - 2)) if depth >= 3 else 0.0  # the flow's least α
    steps = math.ceil(t_max * T / lr) if math.isfinite(T) else math.inf
    if steps > MAX_STEPS and (cfg.trainer.max_steps <= 0 or not math.isfinite(T)):
        alpha = alpha_where(clock, MAX_STEPS * lr / t_max)
        alpha = (f"model.alpha ≥ {rounded(max(alpha, solvable), up=True)}" if alpha is not None
                 else f"(no model.alpha below 1 is enough at depth {depth})")
        needs = f"{steps:.3g} steps" if math.isfinite(T) else "an infinite clock α^−(L−2)"
        raise ConfigError(f"run.t_max={t_max:g} needs {needs} (T_α = {T:.3g} for {at}, "
                          f"optim.lr={lr:g}): use {alpha}, a larger step, a shorter run.t_max, "
                          "or cap it with trainer.max_steps")
    if model.alpha < solvable:
        raise ConfigError(f"{at}: its exact flow (the theory the run is compared with) would have "
                          f"to resolve α^(L−2) = {model.alpha ** (depth - 2):.2g} next to 1, below "
                          f"float64's {FLOW_RESOLUTION:g}: use model.alpha ≥ "
                          f"{rounded(solvable, up=True)} (the clock grows like α^−(L−2): a "
                          "moderate α is already small at depth ≥ 3)")
    if lr / T > MAX_STEP_T and steps < MIN_STEPS:  # advice: enough steps, each within MAX_STEP_T
        alpha = alpha_where(clock, max(MIN_STEPS / t_max, 1 / MAX_STEP_T) * lr, larger=False)
        alpha = f"model.alpha ≤ {rounded(alpha, up=False)}, " if alpha is not None else ""
        step = min(t_max / MIN_STEPS, MAX_STEP_T) * T
        raise ConfigError(f"run.t_max={t_max:g} takes {steps} steps of optim.lr={lr:g}, each "
                          f"covering {lr / T:.3g} of accelerated time (T_α = {T:.3g} for {at}): "
                          f"too coarse to follow the flow (at least {MIN_STEPS} steps, or steps "
                          f"within {MAX_STEP_T:g}): use {alpha}optim.lr ≤ "
                          f"{rounded(step, up=False)} or a longer run.t_max")
    if lr / T > MAX_STEP_T:
        warnings.warn(f"a step of optim.lr={lr:g} covers {lr / T:.3g} of accelerated time "
                      f"(T_α = {T:.3g} for {at}): the run jumps over the theory's events; "
                      f"optim.lr ≤ {rounded(MAX_STEP_T * T, up=False)} keeps a step within "
                      f"{MAX_STEP_T:g}", stacklevel=2)


def alpha_where(clock, bound: float, larger: bool = True) -> float | None:
    """The smallest α in (0, 1) whose clock is at most `bound` (larger=False: the largest whose
    clock is at least `bound`), by bisection on log α (a clock falls as α grows); None if none."""
    lo, hi = math.log(1e-300), math.log1p(-1e-12)
    if clock(math.exp(hi)) > bound if larger else clock(math.exp(lo)) < bound:
        return None
    for _ in range(200):
        mid = (lo + hi) / 2
        if clock(math.exp(mid)) > bound or (not larger and clock(math.exp(mid)) == bound):
            lo = mid
        else:
            hi = mid
    return math.exp(hi if larger else lo)


def rounded(x: float, up: bool) -> str:
    """x to two significant digits, rounded up (a lower bound stays one) or down; more digits
    where two would reach 1 (an α just below 1)."""
    for digits in range(2, 17):
        scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
        value = (math.ceil if up else math.floor)(x / scale * (1 - 1e-12 if up else 1 + 1e-12))
        if x >= 1 or value * scale < 1:
            return f"{value * scale:.{digits}g}"
    return f"{x:.17g}"


def check_callbacks(cfg: DictConfig) -> None:
    """Each configured callback's values, by its schema's check() (callbacks added with a
    `+callbacks.<name>._target_=...` are checked by their constructors)."""
    for key, node in (cfg.callbacks or {}).items():
        schema = OmegaConf.get_type(node)
        if schema in CALLBACKS.values():
            try:
                OmegaConf.to_object(node).check()
            except ConfigError as e:
                raise ConfigError(f"callbacks.{key}.{e}") from None
