"""summary.json: what a run (and each replica of it) reached, for scripts and the aggregation.

A single run's summary is its network's entry; a replica run's has one entry per replica under
`replicas` and the run's own status. Written atomically (a temporary file renamed over it), so a
kill or a full disk leaves the previous file whole, never a truncated one.
"""

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from dlnlab.checks import ConfigError


def divergence_message(replica, X: torch.Tensor, y: torch.Tensor) -> str:
    """Why the network stopped, and a step size that should be stable (from the data's
    curvature)."""
    X, y = X.cpu().double(), y.cpu().double()
    curvature = float(torch.linalg.matrix_norm(X, ord=2) ** 2) / X.shape[0]  # λ_max(XᵀX/n)
    scale = max(1.0, float((torch.linalg.pinv(X) @ y).abs().max()))  # |β| near the path's end
    suggestion = min(replica.lr / 10, 0.5 / (curvature * scale))
    return (f"the loss diverged at step {replica.diverged_at} (t = "
            f"{replica.time(replica.diverged_at):.4g}) with optim.lr={replica.lr:g}: the data's "
            f"largest curvature λ_max(XᵀX/n) is {curvature:.4g}, and GD on a diagonal network "
            f"needs roughly lr < 1/(λ_max·|β|); try optim.lr={suggestion:.1g}")


def finite(value):
    """JSON has no NaN or inf: non-finite numbers (a diverged run's β) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def network_summary(task, replica, findings: dict, wall_time_s: float) -> dict:
    """One network's entry: the contract scripts rely on (docs/design.md, "summary.json")."""
    model = replica.model
    with torch.no_grad():
        beta = model.beta().detach()
        r = task.X @ beta - task.y
        dual = model.dual()
    entry = {
        "status": replica.status,
        "steps": replica.steps_done,
        "t_reached": float(replica.time(replica.steps_done)),
        "final_loss": float(r @ r) / (2 * len(task.y)),
        "beta": beta.cpu().tolist(),
        "dual": None if dual is None else dual.cpu().tolist(),
        "alpha": getattr(model, "alpha", None),
        "lr": replica.lr,
        "time_scale": model.time_scale(),
        "device": str(task.X.device),
        "n": task.X.shape[0],
        "d": task.X.shape[1],
        "wall_time_s": wall_time_s,
        "config": replica.config,
        **findings,
    }
    if replica.status == "diverged":
        entry["message"] = divergence_message(replica, task.X, task.y)
    return entry


def run_summary(entries: list[dict], config: dict, steps: int, wall_time_s: float) -> dict:
    """A replica run's summary: an entry per replica (named by `replica`) and the run's status:
    failed or interrupted if it was, completed if every replica completed, else diverged."""
    statuses = [entry["status"] for entry in entries]
    status = next((s for s in ("failed", "interrupted") if s in statuses),
                  "completed" if set(statuses) == {"completed"} else "diverged")
    summary = {"status": status, "steps": steps, "wall_time_s": wall_time_s, "replicas": entries,
               "config": config}
    diverged = [entry["replica"] for entry in entries if entry["status"] == "diverged"]
    if diverged:
        summary["message"] = (f"{len(diverged)} of {len(entries)} replicas diverged: "
                              f"{', '.join(diverged)}")
    return summary


def write_json(path: Path, data: dict) -> None:
    """`data` as JSON at `path`, atomically (non-finite numbers as null; numpy values as plain)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    text = json.dumps(finite(data), indent=2, default=_plain) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as e:
        remove(partial)
        raise write_error(path, e) from None


def write_error(path: Path, error: OSError) -> ConfigError:
    """One line for a write that failed: the path, the cause (e.g. ENOSPC, EROFS) and the fix."""
    code = errno.errorcode.get(error.errno or 0)
    cause = f"{error.strerror or error}" + (f" ({code})" if code else "")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on its disk"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make its folder writable"
    else:
        fix = "check its disk"
    return ConfigError(f"cannot write {path}: {cause}: {fix}, or write the run elsewhere "
                       "(hydra.run.dir=<folder>; run.output_dir=<folder> from Python)")


def check_writable(folder: Path) -> None:
    """Before any work: the run's folder exists or can be made, and takes a file."""
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"dlnlab")
        probe.unlink()
    except OSError as e:
        remove(probe)
        raise write_error(folder, e) from None


def remove(path: Path) -> None:
    """Remove a partial file if there is one, as far as the disk allows (it may be read-only)."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
