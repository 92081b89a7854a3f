"""Structured-config schemas: Hydra checks every key and type against them at composition.

The YAML files in conf/ hold every default (the one place; constructors take no defaults); these
dataclasses say which keys exist and of what type, and a schema's `check()` range-checks its
values before any work (one line naming the key and the fix). A new model needs no schema (one
class and one YAML file with its `_target_`); the checks of its parameters by name apply to it
(dlnlab.preflight). This module
imports no torch: `dlnlab-train --help` and configuration errors answer at once.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from dlnlab.checks import ConfigError


def find_conf() -> Path:
    """The YAML: dlnlab/conf/ in an install from a wheel or an sdist (pyproject.toml ships the
    checkout's conf/ there), else the checkout's own conf/ (an editable install, or a checkout on
    PYTHONPATH), so that editing conf/ in a checkout takes effect at once."""
    package = Path(__file__).resolve().parent
    for conf in (package / "conf", package.parent / "conf"):
        if (conf / "train.yaml").is_file():
            return conf
    return package / "conf"  # where a complete install has it: Hydra's error will name it


CONF_DIR = str(find_conf())


def _positive(name: str, value, integer: bool = False, zero: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = (not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
          and math.isfinite(value) and (value >= 0 if zero else value > 0))
    if not ok:
        raise ConfigError(f"{name}={value!r} must be {kind} {'≥ 0' if zero else '> 0'}")


@dataclass
class RunConfig:
    t_max: float = MISSING  # train until this accelerated time t = τ / T_α
    seed: int = MISSING  # SGD's mini-batch sampling
    steps_per_call: Optional[int] = None  # optimiser steps per training_step (None: by size)
    record_every_t: float = MISSING  # record β and s this often (accelerated time) for callbacks
    log_every_t: float = MISSING  # log scalars on a grid this fine in t (geometric beyond t = 1)
    log_loss_rtol: float = MISSING  # ... and whenever log L moved by this much
    divergence_factor: float = MISSING  # a loss above this many times L(0) stops the network
    num_threads: Optional[int] = None  # torch CPU threads; None: 1 for small problems, else all
    engine: str = MISSING  # auto, fused (dlnlab/kernel.py's compiled loop) or torch
    output_dir: Optional[str] = None  # where to write when not started by dlnlab-train


@dataclass
class TheoryConfig:
    flow_max_d: int = MISSING  # solve the exact finite-α flow when d ≤ this (cost ∝ d³)

    def check(self) -> None:
        _positive("flow_max_d", self.flow_max_d, integer=True, zero=True)


@dataclass
class OptimConfig:
    method: str = MISSING  # gd (full batch) or sgd (mini-batches)
    lr: Any = MISSING  # a step size, or a list of them: one replica each (dlnlab.replicas)
    batch_size: Optional[int] = None  # sgd only


@dataclass
class TrainerConfig:
    accelerator: str = MISSING
    devices: Any = MISSING
    max_steps: int = MISSING  # a cap on optimiser steps on top of run.t_max; -1 for none
    enable_progress_bar: bool = MISSING
    profiler: Optional[str] = None  # simple: every hook's time (summary.json, fit-profile.txt)


@dataclass
class SyntheticDataConfig:
    _target_: str = "dlnlab.data.synthetic"
    n: int = MISSING
    d: int = MISSING
    k: int = MISSING  # non-zeros of the ground truth β*
    noise: float = MISSING
    features: str = MISSING  # gaussian or correlated
    rho: float = MISSING  # correlation of neighbouring features when correlated
    seed: int = MISSING


@dataclass
class FileDataConfig:
    _target_: str = "dlnlab.data.load"
    path: str = MISSING


@dataclass
class FixtureDataConfig:
    _target_: str = "dlnlab.data.worked_example"


@dataclass
class UVModelConfig:
    _target_: str = "dlnlab.models.UVNetwork"
    alpha: Any = MISSING  # the initialisation scale, or a list of them: one replica each
    shape: Any = MISSING  # uniform, random, or a list of d positive numbers
    shape_seed: Any = MISSING  # the seed of shape=random, or a list of seeds: one replica each
    dtype: str = MISSING


@dataclass
class SymmetricModelConfig(UVModelConfig):
    _target_: str = "dlnlab.models.SymmetricNetwork"
    depth: int = MISSING


@dataclass
class PositiveModelConfig(SymmetricModelConfig):
    _target_: str = "dlnlab.models.PositiveNetwork"


@dataclass
class LossLoggerConfig:
    """`loss` (and `vs_t/loss`) at the run's logged steps (run.log_every_t, run.log_loss_rtol)."""

    _target_: str = "dlnlab.callbacks.LossLogger"

    def check(self) -> None:
        pass


@dataclass
class PlateauLoggerConfig:
    _target_: str = "dlnlab.callbacks.PlateauLogger"
    window_t: float = MISSING  # a plateau lasts at least this long in accelerated time
    rtol: float = MISSING  # ... with the loss inside ±rtol of its level
    atol: float = MISSING  # ... or inside ±atol·L(0) (the approach to a zero loss)
    active_threshold: float = MISSING  # |β_i| above this counts as active in a plateau's support

    def check(self) -> None:
        for name in ("window_t", "rtol", "active_threshold"):
            _positive(name, getattr(self, name))
        _positive("atol", self.atol, zero=True)


@dataclass
class ActiveCoordinatesConfig:
    _target_: str = "dlnlab.callbacks.ActiveCoordinates"
    threshold: float = MISSING  # |β_i| above this counts as active (a coordinate switching off
    # decays only like α^(2(1−|s|)) at finite α: lower it to see the decay)
    max_coords: int = MISSING  # beta/i and dual/i scalars for at most this many coordinates
    hist_every_t: float = MISSING  # a histogram of β this often in accelerated time

    def check(self) -> None:
        _positive("threshold", self.threshold)
        _positive("max_coords", self.max_coords, integer=True, zero=True)
        _positive("hist_every_t", self.hist_every_t)


@dataclass
class TheoryOverlayConfig:
    _target_: str = "dlnlab.callbacks.TheoryOverlay"
    threshold: float = MISSING  # the run's coordinates above this get the limit's and flow's too
    max_coords: int = MISSING  # at most this many coordinates overlaid

    def check(self) -> None:
        _positive("threshold", self.threshold)
        _positive("max_coords", self.max_coords, integer=True, zero=True)


@dataclass
class FiguresConfig:
    _target_: str = "dlnlab.callbacks.Figures"
    threshold: float = MISSING  # the run's coordinates above this are drawn (with the limit's)
    max_coords: int = MISSING  # at most this many coordinates drawn

    def check(self) -> None:
        _positive("threshold", self.threshold)
        _positive("max_coords", self.max_coords, integer=True, zero=True)


@dataclass
class EffectiveAlphaConfig:
    """The effective initialisation of depth-2 networks and the end point it predicts
    (dlnlab/callbacks/effective.py, docs/large-steps.md)."""

    _target_: str = "dlnlab.callbacks.EffectiveAlpha"
    hist_every_t: float = MISSING  # a histogram of the gain α_eff/α_eff(0) this often in t
    max_d: int = MISSING  # compare the end point with the theory when d ≤ this (a Newton solve)
    converged_within: float = MISSING  # converged: the flow from the final state moves β by at
    # most this times the nominal prediction's error
    threshold: float = MISSING  # figures/end_point.png: coordinates with |β_i| above this
    max_coords: int = MISSING  # ... at most this many
    figure: str = MISSING  # figures/end_point.png: auto (converged, and some α_eff shrank by
    # 1% or more), always or never

    def check(self) -> None:
        _positive("hist_every_t", self.hist_every_t)
        _positive("max_d", self.max_d, integer=True, zero=True)
        _positive("converged_within", self.converged_within)
        _positive("threshold", self.threshold)
        _positive("max_coords", self.max_coords, integer=True, zero=True)
        if self.figure not in ("auto", "always", "never"):
            raise ConfigError(f"figure={self.figure!r} is unknown: use auto (draw "
                              "figures/end_point.png when the run has converged and its steps "
                              "shrank α_eff), always or never")


@dataclass
class CheckpointsConfig:
    _target_: str = "dlnlab.callbacks.Checkpoints"
    every_t: float = MISSING  # checkpoints/last.ckpt this often in accelerated time,
    every_s: float = MISSING  # ... but at most every every_s seconds of wall time (and at the end)

    def check(self) -> None:
        _positive("every_t", self.every_t)
        _positive("every_s", self.every_s, zero=True)


@dataclass
class LossFileConfig:
    """Every step's loss in <run dir>/losses.f64 (raw float64)."""

    _target_: str = "dlnlab.callbacks.LossFile"

    def check(self) -> None:
        pass


CALLBACKS = {"loss_logger": LossLoggerConfig, "plateaus": PlateauLoggerConfig,
             "coordinates": ActiveCoordinatesConfig, "theory": TheoryOverlayConfig,
             "figures": FiguresConfig, "checkpoints": CheckpointsConfig,
             "loss_file": LossFileConfig, "effective_alpha": EffectiveAlphaConfig}


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: Any = field(default_factory=dict)
    logger: Any = None
    run: RunConfig = field(default_factory=RunConfig)
    theory: TheoryConfig = field(default_factory=TheoryConfig)
    ckpt_path: Optional[str] = None  # resume from this checkpoint (<run dir>/checkpoints/last.ckpt)


def run_name(overrides: str) -> str:
    """`_<the overrides that matter>` for a run directory's name (hydra.job.override_dirname),
    made safe as one file name: TensorBoard names runs by their folders."""
    safe = re.sub(r"[^\w.=,+\-\[\]]", "_", overrides)[:120]
    return f"_{safe}" if safe else ""


def register() -> None:
    """Put the schemas where the YAML defaults lists find them (`- /<name>_schema@_here_`, and
    `- /callback_<name>_schema@<name>` for callbacks), outside the groups users choose from."""
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="optim_schema", node=OptimConfig)
    cs.store(name="trainer_schema", node=TrainerConfig)
    cs.store(name="data_synthetic_schema", node=SyntheticDataConfig)
    cs.store(name="data_file_schema", node=FileDataConfig)
    cs.store(name="data_fixture_schema", node=FixtureDataConfig)
    cs.store(name="model_uv_schema", node=UVModelConfig)
    cs.store(name="model_symmetric_schema", node=SymmetricModelConfig)
    cs.store(name="model_positive_schema", node=PositiveModelConfig)
    for name, schema in CALLBACKS.items():
        cs.store(name=f"callback_{name}_schema", node=schema)
