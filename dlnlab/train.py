"""train(cfg) -> summary: check the run (dlnlab.preflight), build its stack, task and callbacks,
fit, and write summary.json (docs/design.md, "Starting a run").

`dlnlab-train` (dlnlab.cli) is the Hydra entry point; `train` works with a config from Hydra's
compose API too.
"""

import contextlib
import gc
import logging
import math
import signal
import time
import warnings

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.profilers import SimpleProfiler
from omegaconf import DictConfig, OmegaConf

from dlnlab import resume
from dlnlab.callbacks import AcceleratedTimeProgressBar
from dlnlab.checks import ConfigError
from dlnlab.engines import ENGINES
from dlnlab.files import check_writable, write_error, write_json
from dlnlab.preflight import RunSpec, build, preflight, steps_to
from dlnlab.record import Replica
from dlnlab.stack import Stack
from dlnlab.task import DiagonalTask, steps_per_call

SMALL_PROBLEM = 1_000_000  # n·d (times the replicas) below which one thread beats two
STACK_FUSED = 10_000  # n·d below which a stack steps in the fused loop (scripts/bench.py)
RECORD_WORK = 200  # record at most every RECORD_WORK / n steps (record_interval)
ALL_THREADS = torch.get_num_threads()  # torch's default, before a small run sets 1 for this process


def _quiet_lightning() -> None:
    """Keep Lightning's warnings, drop its INFO lines (GPU/TPU availability, "`Trainer.fit`
    stopped", the advertising tip: each printed twice, by Lightning and through Hydra's log, where
    the run prints its own status, device and TensorBoard lines) and the warning about our
    deliberate optimiser-free task."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: record.levelno >= logging.WARNING)
    warnings.filterwarnings("ignore", message=".*configure_optimizers` returned `None`")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


def device_type(cfg: DictConfig) -> str:
    """Where Lightning will put the run: "cuda" or "cpu"."""
    accelerator = cfg.trainer.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU: "
                          "use trainer.accelerator=cpu (or auto)")
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "cuda" if cuda else "cpu"


def choose_engine(cfg: DictConfig, model, n: int, d: int, replicas: int):
    """run.engine: auto, fused or torch. auto: the fused loop on the CPU for a model with a power
    form, below n·d = 1e6 for one network (BLAS on all cores wins above), below 1e4 for a stack of
    replicas (its two matrix products a step win above)."""
    engine = cfg.run.engine
    possible = device_type(cfg) == "cpu" and model.power_form() is not None
    if engine == "fused" and not possible:
        has = "one" if model.power_form() else "none"
        raise ConfigError(f"run.engine=fused needs the CPU (trainer.accelerator=cpu) and a model "
                          f"with a power form (β = a^L − b^L; {type(model).__name__} has {has}): "
                          "use run.engine=auto")
    small = n * d < (STACK_FUSED if replicas > 1 else SMALL_PROBLEM)
    fused = engine == "fused" or (engine == "auto" and possible and small)
    return ENGINES["fused" if fused else "torch"]()


def record_interval(steps: float, n: int) -> int:
    """Record β every `steps` steps (run.record_every_t of accelerated time), but at most every
    RECORD_WORK / n steps: a record costs the callbacks O(d) work, a step O(n·d), so that at large
    α and small n (a unit of t is a few hundred steps of a 20-sample problem) records stay a few
    per cent of the run."""
    return max(1, round(steps), math.ceil(RECORD_WORK / n))


def make_task(cfg: DictConfig, checked: RunSpec) -> DiagonalTask:
    """The stack of networks (one per replica) and its task, every value checked first."""
    n, d = checked.X.shape
    replicas = []
    for e, (name, c) in enumerate(checked.replicas):
        model = build(c.model, "model", d=d)
        clock = model.time_scale() or 1.0
        lr = c.optim.lr
        replicas.append(Replica(
            index=e, name=name, model=model, lr=lr, max_steps=steps_to(c, clock),
            record_every=record_interval(c.run.record_every_t * clock / lr, n),
            directory=checked.output_dir / "replicas" / name if name else checked.output_dir,
            config=OmegaConf.to_container(c, resolve=True)))
    stack = Stack([replica.model for replica in replicas])
    engine = choose_engine(cfg, replicas[0].model, n, d, len(replicas))
    fused = engine.name == "fused"
    block = cfg.run.steps_per_call or steps_per_call(n, d, fused)
    run = cfg.run
    return DiagonalTask(stack, replicas, torch.from_numpy(checked.X), torch.from_numpy(checked.y),
                        engine, batch_size=cfg.optim.batch_size, seed=run.seed,
                        steps_per_call=block, divergence_factor=run.divergence_factor,
                        log_every_t=run.log_every_t, log_loss_rtol=run.log_loss_rtol,
                        flow_max_d=cfg.theory.flow_max_d,
                        config=OmegaConf.to_container(cfg, resolve=True))


def train(cfg: DictConfig, checked: RunSpec | None = None) -> dict:
    """Train as configured; write and return the summary (status, steps, t_reached, final_loss,
    beta, …; with replicas, an entry per replica under "replicas")."""
    checked = checked or preflight(cfg)
    _quiet_lightning()
    out = checked.output_dir
    check_writable(out)  # a full or read-only disk: one line now, not a traceback mid-run
    task = make_task(cfg, checked)
    restored = resume.check(cfg, task, device_type(cfg)) if cfg.ckpt_path else None  # or one line
    n, d = checked.X.shape
    small = n * d * len(task.replicas) < SMALL_PROBLEM
    torch.set_num_threads(cfg.run.num_threads or (1 if small else ALL_THREADS))
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    if cfg.logger:
        for replica in task.replicas:
            replica.tensorboard = instantiate(cfg.logger, directory=replica.directory)
    if cfg.trainer.enable_progress_bar:
        callbacks.append(AcceleratedTimeProgressBar())
    profiler = (SimpleProfiler(dirpath=str(out), filename="profile") if cfg.trainer.profiler
                else None)
    trainer = pl.Trainer(max_steps=task.max_steps, max_epochs=-1,
                         accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
                         enable_progress_bar=cfg.trainer.enable_progress_bar, logger=False,
                         callbacks=callbacks, default_root_dir=str(out),
                         enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
                         enable_model_summary=False, num_sanity_val_steps=0, profiler=profiler,
                         plugins=[resume.CheckpointFiles(cfg.ckpt_path, restored)])
    task.output_dir = out
    try:
        with frozen_heap():
            trainer.fit(task, ckpt_path=cfg.ckpt_path)
    except Exception as e:
        failure = write_error(e.filename or out, e) if isinstance(e, OSError) else None
        with contextlib.suppress(ConfigError):  # a full disk may refuse the summary too
            write_json(out / "summary.json", task.summary(status="failed",
                                                          message=f"{failure or e}"))
        if failure is not None:
            raise failure from None
        raise
    finally:
        for replica in task.replicas:
            if replica.tensorboard is not None:
                replica.tensorboard.close()
    summary = task.last_summary  # written when training ended: now with the figures' time too
    if isinstance(task.stop_requested, int) and not isinstance(task.stop_requested, bool):
        summary["signal"] = signal.Signals(task.stop_requested).name  # dlnlab-train: 128 + it
    summary["wall_time_s"] = time.perf_counter() - task.started
    if profiler is not None:  # seconds per hook, most first
        totals = {action: math.fsum(times) for action, times in profiler.recorded_durations.items()}
        summary["profile_s"] = dict(sorted(totals.items(), key=lambda item: -item[1]))
    write_json(out / "summary.json", summary)
    if len(task.replicas) > 1:
        from dlnlab.aggregate import aggregate

        aggregate(out)  # the sweep's table and figure (aggregate.md, .csv, .png), as for a multirun
    return summary


@contextlib.contextmanager
def frozen_heap():
    """Keep the objects that exist before training (torch's, Lightning's, matplotlib's: about a
    million) out of the garbage collector's passes while it trains: a full pass over them stopped
    a run at random moments for as long as hundreds of thousands of steps of a small problem."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
