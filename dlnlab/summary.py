"""summary.json: what a run (and each replica of it) reached, for scripts and the aggregation.

A single run's summary is its network's entry; a replica run's has one entry per replica under
`replicas` and the run's own status. Written by dlnlab.files.write_json: atomically, so a kill or
a full disk leaves the previous file whole.
"""

import torch


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
