"""summary.json: what a run (or one replica of it) reached, for scripts and the aggregation."""

import math

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from dlnlab.task import DiagonalTask


def divergence_message(task: DiagonalTask) -> str:
    """Why the run stopped, and a step size that should be stable (from the data's largest curvature)."""
    curvature = float(torch.linalg.matrix_norm(task.X, ord=2) ** 2) / task.n  # λ_max(XᵀX/n)
    scale = max(1.0, float((torch.linalg.pinv(task.X) @ task.y).abs().max()))  # |β| near the end of the path
    suggestion = min(task.lr / 10, 0.5 / (curvature * scale))
    return (f"the loss diverged at step {task.diverged_at} (t = {task.accelerated_time(task.diverged_at):.4g}) "
            f"with optim.lr={task.lr:g}: the data's largest curvature λ_max(XᵀX/n) is {curvature:.4g}, and GD on a "
            f"diagonal network needs roughly lr < 1/(λ_max·|β|); try optim.lr={suggestion:.1g}")


def finite(value):
    """JSON has no NaN or inf: non-finite numbers (a diverged run's β) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def summarize(trainer: pl.Trainer, task: DiagonalTask, cfg: DictConfig, wall_time_s: float) -> dict:
    """The contract scripts rely on: summary.json (DESIGN.md, "Callbacks")."""
    if task.status == "running":
        task.status = "interrupted" if trainer.interrupted or trainer.global_step < trainer.max_steps else "completed"
    steps = trainer.global_step
    return {
        "status": task.status,
        "steps": steps,
        "t_reached": task.accelerated_time(steps),
        "final_loss": task.loss(),
        "beta": task.model.beta().detach().cpu().tolist(),
        "dual": None if (dual := task.model.dual()) is None else dual.cpu().tolist(),
        "alpha": task.model.alpha,
        "lr": task.lr,
        "time_scale": task.model.time_scale(),
        "device": str(task.X.device),
        "n": task.n,
        "d": task.X.shape[1],
        "wall_time_s": wall_time_s,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def report(trainer: pl.Trainer, task: DiagonalTask, cfg: DictConfig, findings: dict, wall_time_s: float) -> dict:
    """A run's summary: `summarize`, the callbacks' findings (plateaus, saddles, ...) and, if the loss
    diverged, why and what step size to try."""
    summary = {**summarize(trainer, task, cfg, wall_time_s), **findings}
    if task.status == "diverged":
        summary["message"] = divergence_message(task)
    return summary


def replica_summary(trainer: pl.Trainer, entries: list[dict], cfg: DictConfig, wall_time_s: float) -> dict:
    """A replica run's summary: one entry per replica (each a run's summary, named by `replica`) and the
    run's status: interrupted if any replica was, completed if all were, else diverged (say which)."""
    statuses = [entry["status"] for entry in entries]
    summary = {
        "status": "interrupted" if "interrupted" in statuses else "completed" if set(statuses) == {"completed"}
        else "diverged",
        "steps": trainer.global_step,
        "wall_time_s": wall_time_s,
        "replicas": entries,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    diverged = [entry["replica"] for entry in entries if entry["status"] == "diverged"]
    if diverged:
        summary["message"] = f"{len(diverged)} of {len(entries)} replicas diverged: {', '.join(diverged)}"
    return summary
