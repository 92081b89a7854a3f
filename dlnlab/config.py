"""Structured-config schemas: Hydra checks every key and type against them at composition.

The YAML files in conf/ hold the defaults; these dataclasses say which keys exist and of what
type, so `model.alpah=1e-5` or `run.t_max=abc` fails with a message naming the key. A new model
needs no schema (one class and one YAML file with its `_target_`); it gets one for typed checks.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RunConfig:
    t_max: float = MISSING  # train until this accelerated time t = tau / T_alpha
    seed: int = MISSING  # SGD's mini-batch sampling
    steps_per_call: Optional[int] = None  # optimiser steps per Lightning training_step (None: by problem size)
    record_every_t: float = MISSING  # the task records β and s this often (accelerated time) for callbacks
    divergence_factor: float = MISSING  # a loss above this many times L(0) (or non-finite) stops the run
    num_threads: Optional[int] = None  # torch CPU threads; None: 1 for small problems, else all
    engine: str = MISSING  # auto, fused (dlnlab.kernel's compiled loop) or torch (tensor operations)
    output_dir: Optional[str] = None  # where to write when not started by Hydra's main (compose API)


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
    profiler: Optional[str] = None  # simple: Lightning's SimpleProfiler times every hook (summary.json, fit-profile.txt)


@dataclass
class SyntheticDataConfig:
    _target_: str = "dlnlab.data.synthetic"
    n: int = MISSING
    d: int = MISSING
    k: int = MISSING  # non-zeros of the ground truth beta*
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
    alpha: Any = MISSING  # the initialisation scale, or a list of them: one replica each (dlnlab.replicas)
    shape: Any = MISSING  # uniform, random, or a list of d positive numbers
    shape_seed: Any = MISSING  # the seed of shape=random, or a list of seeds: one replica each
    dtype: str = MISSING


@dataclass
class SymmetricModelConfig(UVModelConfig):
    _target_: str = "dlnlab.models.SymmetricNetwork"
    depth: int = MISSING


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: Any = field(default_factory=dict)
    logger: Any = None
    run: RunConfig = field(default_factory=RunConfig)
    ckpt_path: Optional[str] = None  # resume from this checkpoint (<run dir>/checkpoints/last.ckpt)


def register() -> None:
    """Put the schemas where the YAML defaults lists find them (`- /<name>@_here_`), outside the groups."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="optim_schema", node=OptimConfig)
    cs.store(name="trainer_schema", node=TrainerConfig)
    cs.store(name="data_synthetic_schema", node=SyntheticDataConfig)
    cs.store(name="data_file_schema", node=FileDataConfig)
    cs.store(name="data_fixture_schema", node=FixtureDataConfig)
    cs.store(name="model_uv_schema", node=UVModelConfig)
    cs.store(name="model_symmetric_schema", node=SymmetricModelConfig)
