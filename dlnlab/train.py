"""train(cfg) -> summary: build data, model and task from a composed config, fit, write summary.json.

`dlnlab-train` is the Hydra entry point; `train` is usable with a config from Hydra's compose API.
"""

import contextlib
import gc
import json
import logging
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.profilers import SimpleProfiler
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from dlnlab import config
from dlnlab.aggregate import aggregate
from dlnlab.callbacks import AcceleratedTimeProgressBar
from dlnlab.callbacks.replicas import ReplicaCallbacks
from dlnlab.checks import ConfigError, exit_on_config_error
from dlnlab.data import RegressionData
from dlnlab.replicas import ReplicaTask, expand, replica_steps_per_call
from dlnlab.summary import finite, replica_summary, report
from dlnlab.task import DiagonalTask, steps_per_call

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the checkout's conf/ (editable install)
SMALL_PROBLEM = 1_000_000  # n·d (times the replicas) below which one thread beats two (DESIGN.md)
STACK_FUSED = 10_000  # n·d below which a stack of replicas steps in the fused loop (measured: scripts/bench.py)
ALL_THREADS = torch.get_num_threads()  # torch's default, before a small run sets 1 for this process
MAX_STEPS = 10**9  # beyond this (hours to days), a run is almost surely a misconfigured clock


def _quiet_lightning() -> None:
    """Drop Lightning's advertising tip and the warning about our deliberate optimiser-free task."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡"))
    warnings.filterwarnings("ignore", message=".*configure_optimizers` returned `None`")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


def build(node: DictConfig, key: str, **kwargs):
    """Instantiate a config node; a missing value or a ConfigError inside comes out naming the key."""
    missing = sorted(OmegaConf.missing_keys(node))  # full keys, e.g. data.path
    if missing:
        raise ConfigError(f"{missing[0]} has no value: set it on the command line, e.g. {missing[0]}=<value>")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise ConfigError(f"{key}.{e.__cause__}") from None
        raise


def check_run(cfg: DictConfig, n: int) -> None:
    """Range checks the schema's types cannot express; each names the key, the value and the fix."""
    optim, run = cfg.optim, cfg.run
    if optim.method not in ("gd", "sgd"):
        raise ConfigError(f"optim.method={optim.method!r} is unknown: use optim=gd or optim=sgd")
    if not (math.isfinite(optim.lr) and optim.lr > 0):
        raise ConfigError(f"optim.lr={optim.lr!r} must be a positive step size (e.g. optim.lr=1e-2)")
    if optim.method == "sgd" and not (optim.batch_size is not None and 1 <= optim.batch_size <= n):
        raise ConfigError(f"optim.batch_size={optim.batch_size!r} must be between 1 and n={n} for SGD")
    if optim.method == "gd" and optim.batch_size is not None:
        raise ConfigError(f"optim.batch_size={optim.batch_size!r} is for SGD: use optim=sgd, or drop it for GD")
    if not (math.isfinite(run.t_max) and run.t_max > 0):
        raise ConfigError(f"run.t_max={run.t_max!r} must be a positive accelerated time (e.g. run.t_max=10)")
    if run.steps_per_call is not None and run.steps_per_call < 1:
        raise ConfigError(f"run.steps_per_call={run.steps_per_call!r} must be ≥ 1")
    if not run.record_every_t > 0:
        raise ConfigError(f"run.record_every_t={run.record_every_t!r} must be a positive accelerated time")
    if not run.divergence_factor > 1:
        raise ConfigError(f"run.divergence_factor={run.divergence_factor!r} must be > 1 (a loss this many times "
                          "L(0) counts as diverged)")
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path!r}: no such checkpoint (runs save <run dir>/checkpoints/last.ckpt)")
    if cfg.trainer.max_steps < -1 or cfg.trainer.max_steps == 0:
        raise ConfigError(f"trainer.max_steps={cfg.trainer.max_steps!r} must be a positive step cap, or -1 for none")
    if cfg.trainer.profiler not in (None, "simple"):
        raise ConfigError(f"trainer.profiler={cfg.trainer.profiler!r} is unknown: use trainer.profiler=simple (the time "
                          "of every hook), or null (default) for none")


def output_dir(cfg: DictConfig) -> Path:
    """Hydra's run directory under dlnlab-train; run.output_dir when train() is called from Python."""
    if HydraConfig.initialized():
        if cfg.run.output_dir is not None:
            raise ConfigError(f"run.output_dir={cfg.run.output_dir} is for train() called from Python: dlnlab-train "
                              "writes where Hydra says, so pass hydra.run.dir=<folder> (hydra.sweep.dir=<folder> with -m)")
        return Path(HydraConfig.get().runtime.output_dir)
    if cfg.run.output_dir is None:
        raise ConfigError("run.output_dir is not set: outside dlnlab-train, pass run.output_dir=<folder>")
    return Path(cfg.run.output_dir)


def device_type(cfg: DictConfig) -> str:
    """Where Lightning will put the run: "cuda" or "cpu" (the fused engine is for the CPU)."""
    accelerator = cfg.trainer.accelerator
    return "cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()) else "cpu"


def fused_engine(cfg: DictConfig, model, n: int, d: int, stacked: bool = False) -> bool:
    """Whether the run steps in dlnlab.kernel's compiled loop (run.engine: auto, fused or torch). auto: on
    the CPU for a model with a power form, below n·d = 1e6 for one network (BLAS on all cores wins above),
    below 1e4 for a stack of replicas (its two matrix products a step win above)."""
    engine, possible = cfg.run.engine, device_type(cfg) == "cpu" and model.power_form() is not None
    if engine not in ("auto", "fused", "torch"):
        raise ConfigError(f"run.engine={engine!r} is unknown: use auto (default), fused or torch")
    if engine == "fused" and not possible:
        raise ConfigError(f"run.engine=fused needs the CPU (trainer.accelerator=cpu) and a model with a power form "
                          f"(β = a^L − b^L; {type(model).__name__} has {'one' if model.power_form() else 'none'}): "
                          "use run.engine=auto")
    return engine == "fused" or (engine == "auto" and possible and n * d < (STACK_FUSED if stacked else SMALL_PROBLEM))


def make_task(cfg: DictConfig, data: RegressionData, stacked: bool = False) -> DiagonalTask:
    """The model and its training task as configured, every value checked before any work is done."""
    model = build(cfg.model, "model", d=data.d)
    check_run(cfg, data.n)
    lr = cfg.optim.lr
    steps = math.ceil(cfg.run.t_max * model.time_scale() / lr)
    if cfg.trainer.max_steps > 0:
        steps = min(steps, cfg.trainer.max_steps)
    elif steps > MAX_STEPS:
        raise ConfigError(f"run.t_max={cfg.run.t_max:g} needs {steps:.3g} steps (T_α = {model.time_scale():.3g}, "
                          f"optim.lr={lr:g}): use a larger model.alpha (depth ≥ 3 converges polynomially: 1e-2 is small "
                          f"there), a larger step, a shorter run.t_max, or cap it with trainer.max_steps")
    fused = fused_engine(cfg, model, data.n, data.d, stacked)
    return DiagonalTask(model, data.X, data.y, lr=lr, batch_size=cfg.optim.batch_size,
                        steps_per_call=cfg.run.steps_per_call or steps_per_call(data.n, data.d, fused), seed=cfg.run.seed,
                        record_every=max(1, round(cfg.run.record_every_t * model.time_scale() / lr)),
                        divergence_factor=cfg.run.divergence_factor, max_steps=steps, fused=fused)


def train(cfg: DictConfig) -> dict:
    """Train as configured; write and return the summary (status, steps, t_reached, final_loss, beta, ...).

    With a list in a key of dlnlab.replicas.REPLICABLE (e.g. model.alpha=[1e-5,1e-20]) the run trains
    one replica per value, stacked; each writes to <run>/replicas/<i>_<key>=<value>/ and has its entry
    under "replicas" in the summary."""
    _quiet_lightning()
    out = output_dir(cfg)
    data = RegressionData(*build(cfg.data, "data"))
    replicas = expand(cfg)
    tasks = [make_task(c, data, stacked=True) for _, c in replicas] or [make_task(cfg, data)]
    small = data.n * data.d * len(tasks) < SMALL_PROBLEM
    torch.set_num_threads(cfg.run.num_threads or (1 if small else ALL_THREADS))
    if replicas:
        task = ReplicaTask(tasks, cfg.run.steps_per_call or replica_steps_per_call(data.n, data.d, len(tasks), tasks[0].fused))
        roots = [out / "replicas" / name for name, _ in replicas]
        per_replica = [[instantiate(c) for c in cfg.callbacks.values()] for _ in replicas]
        loggers = [instantiate(cfg.logger, save_dir=str(root)) if cfg.logger else None for root in roots]
        found = ReplicaCallbacks(roots, loggers, [[c for c in cs if not isinstance(c, Checkpoint)] for cs in per_replica])
        callbacks = [found] + [c for c in per_replica[0] if isinstance(c, Checkpoint)]  # one checkpoint of the stack
        logger = False
    else:
        task = tasks[0]
        callbacks = [instantiate(c) for c in cfg.callbacks.values()]
        logger = instantiate(cfg.logger, save_dir=str(out)) if cfg.logger else False
    if cfg.trainer.enable_progress_bar:
        callbacks.append(AcceleratedTimeProgressBar())
    profiler = SimpleProfiler(dirpath=str(out), filename="profile") if cfg.trainer.profiler else None
    trainer = pl.Trainer(max_steps=task.max_steps, max_epochs=-1, accelerator=cfg.trainer.accelerator,
                         devices=cfg.trainer.devices, enable_progress_bar=cfg.trainer.enable_progress_bar,
                         logger=logger, callbacks=callbacks, default_root_dir=str(out),
                         enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
                         enable_model_summary=False, num_sanity_val_steps=0, profiler=profiler)

    start = time.perf_counter()
    try:
        with stop_on_signals(task), frozen_heap(), contextlib.suppress(SIGTERMException):  # already stopped cleanly
            trainer.fit(task, datamodule=data, ckpt_path=cfg.ckpt_path)
    finally:
        wall_time_s = time.perf_counter() - start
        if replicas:
            entries = [{"replica": name, **report(view, replica, c, findings, wall_time_s)} for (name, c), view, replica,
                       findings in zip(replicas, found.views(trainer, task), task.replicas, found.summaries())]
            summary = replica_summary(trainer, entries, cfg, wall_time_s)
        else:
            findings = {k: v for c in callbacks if hasattr(c, "summary") for k, v in c.summary().items()}
            summary = report(trainer, task, cfg, findings, wall_time_s)
        if profiler is not None:  # seconds per hook, most first
            totals = {action: math.fsum(times) for action, times in profiler.recorded_durations.items()}
            summary["profile_s"] = dict(sorted(totals.items(), key=lambda item: -item[1]))
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(finite(summary), indent=2) + "\n")
    if replicas:
        aggregate(out)  # the sweep's table and figure (aggregate.md, .csv, .png), as for a multirun
    return summary


@contextlib.contextmanager
def frozen_heap():
    """Keep the objects that exist before training (torch's, Lightning's, matplotlib's: about a million)
    out of the garbage collector's passes while it trains: a full pass over them stopped a run for
    0.25–0.4 s at random moments, as long as 300,000 steps of a small problem."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def stop_on_signals(task: DiagonalTask):
    """SIGINT / SIGTERM ask the task to stop at the end of its current block of steps (a few ms), so
    the final checkpoint and summary describe a consistent state; a second SIGINT interrupts at once."""
    def request_stop(signum, frame):
        if task.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        task.stop_requested = True

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    with exit_on_config_error("dlnlab-train"):
        summary = train(cfg)
    entries = summary.get("replicas", [summary])
    for entry in entries:
        print(f"{entry.get('replica', '') + ': ' if 'replica' in entry else ''}{entry['status']}: {entry['steps']} "
              f"steps to t = {entry['t_reached']:.4g}, final loss {entry['final_loss']:.3e}")
        if entry["status"] == "diverged":
            print(f"dlnlab-train: {entry.get('replica', '') + ': ' if 'replica' in entry else ''}{entry['message']}",
                  file=sys.stderr)
    print(f"{summary['status']} ({summary['wall_time_s']:.1f} s) -> {output_dir(cfg)}")
    if all(entry["status"] == "diverged" for entry in entries) and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(1)  # a sweep (or a replica run with some replicas left) goes on; its summaries say which diverged


def cli() -> None:
    config.register()
    main()


if __name__ == "__main__":
    cli()
