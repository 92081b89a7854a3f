"""Aggregate a sweep: every summary.json under a folder (a multirun's jobs, a replica run's
replicas) into one table (markdown and CSV) and one figure; jobs that failed, were interrupted or
left no summary.json (missing) are listed too.

    python scripts/aggregate.py outputs/multirun/<sweep>      (or dlnlab-aggregate)

Per job: α, step size, status, saddles reached, and per jump k (docs/theory.md §5.1–§5.2, §5.6):
  the jump-time error against the α → 0 limit, |t_run,k − t_limit,k| / t_limit,k, and that times
  log(1/α), which tends to a constant per jump as α → 0 (jump times converge like C_k / log(1/α));
  the same for the exact flow at the run's α (the α part alone, free of step-size error);
  the step-size error against the exact flow at the same α, |t_run,k − t_flow,k| / t_flow,k
  (O(lr));
and the saddle-value error, max_k |L_run − L_limit| / L_limit over the saddles the run reached (its
loss half-way between its jumps into and out of saddle k).
Errors are compared jump by jump: a slow late jump that some runs do not reach is not mixed in.
"""

import argparse
import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dlnlab.sweeps import jobs  # noqa: E402

COLUMNS = ["job", "alpha", "log_inv_alpha", "lr", "method", "status", "reached", "saddles",
           "jump_errors", "flow_errors", "step_errors", "value_error", "message"]


def _rel(a, b) -> float | None:
    return None if a is None or b in (None, 0) else abs(a / b - 1)


def row(summary: dict, job: str) -> dict:
    """One job's (or one replica's) line of the table, from its summary (a job that failed before
    training has only its status, message and config)."""
    saddles = summary.get("saddles", [])[1:]
    values = [_rel(s["loss_run"], s["loss_limit"]) for s in saddles if s["loss_limit"] > 0]
    config = summary.get("config") or {}
    alpha = summary.get("alpha", (config.get("model") or {}).get("alpha"))
    alpha = alpha if isinstance(alpha, (int, float)) and 0 < alpha < 1 else None
    lr = summary.get("lr", (config.get("optim") or {}).get("lr"))
    return {
        "job": job,
        "alpha": alpha, "log_inv_alpha": None if alpha is None else math.log(1 / alpha),
        "lr": lr if isinstance(lr, (int, float)) else None,
        "method": (config.get("optim") or {}).get("method"), "status": summary["status"],
        "reached": sum(s["t_run"] is not None for s in saddles), "saddles": len(saddles),
        "jump_errors": [_rel(s["t_run"], s["t_limit"]) for s in saddles],
        # α's share of it, without the step:
        "flow_errors": [_rel(s["t_flow"], s["t_limit"]) for s in saddles],
        "step_errors": [_rel(s["t_run"], s["t_flow"]) for s in saddles],
        "value_error": max((v for v in values if v is not None), default=None),
        "message": summary.get("message") if summary["status"] != "completed" else None,
    }


def collect(root: Path) -> list[dict]:
    """A row per run (per replica of a replica run) under `root`, and one per job of a sweep that
    left no summary.json (status missing: it never started, or was killed)."""
    rows = []
    for path in sorted(root.rglob("summary.json")):  # a run's summary, or a replica run's
        summary, job = json.loads(path.read_text()), path.parent.relative_to(root)
        entries = summary.get("replicas")
        rows += [row(entry, str(job / "replicas" / entry["replica"])) for entry in entries] \
            if entries else [row(summary, str(job))]
    rows += [row({"status": "missing", "message": job["message"]}, job["job"])
             for job in jobs(root) if job["status"] == "missing"]
    if not rows:
        raise SystemExit(f"aggregate: no summary.json under {root}: give the folder of a sweep "
                         "(outputs/multirun/...)")
    return sorted(rows, key=lambda r: (r["log_inv_alpha"] is None, -(r["log_inv_alpha"] or 0),
                                       -(r["lr"] or 0), r["job"]))


def incomplete(rows: list[dict]) -> list[str]:
    """A line per run that failed, was interrupted or is missing, with its message."""
    return [f"{r['status']}: {r['job']}: {r['message'] or r['status']}" for r in rows
            if r["status"] in ("failed", "interrupted", "missing")]


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _list(values, factor: float = 1.0) -> str:
    return ", ".join(_fmt(None if v is None else v * factor) for v in values)


def markdown(rows: list[dict]) -> str:
    head = ("| job | α | lr | status | jumps reached | run's relative jump-time error vs the "
            "limit, per jump | flow's (same α) | flow's × log(1/α) | run's × log(1/α) | run vs "
            "flow (relative; the step size's) | relative saddle-value error |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    table = head + "".join(
        f"| {r['job']} | {_fmt(r['alpha'])} | {_fmt(r['lr'])} | {r['status']} | "
        f"{r['reached']}/{r['saddles']} | {_list(r['jump_errors'])} | {_list(r['flow_errors'])} | "
        f"{_list(r['flow_errors'], r['log_inv_alpha'])} | "
        f"{_list(r['jump_errors'], r['log_inv_alpha'])} | {_list(r['step_errors'])} | "
        f"{_fmt(r['value_error'])} |\n" for r in rows)
    lines = incomplete(rows)
    if lines:
        table += f"\n{len(lines)} of {len(rows)} did not complete:\n\n"
        table += "".join(f"- {line}\n" for line in lines)
    return table


def _per_jump(rows: list[dict], key: str, x: str):
    """(k, xs, errors) for each jump k, over the runs that reached it."""
    for k in range(max((len(r[key]) for r in rows), default=0)):
        points = sorted((r[x], r[key][k]) for r in rows
                        if k < len(r[key]) and r[key][k] is not None)
        if points:
            yield k + 1, *map(np.array, zip(*points))


def figure(rows: list[dict]) -> plt.Figure:
    """(a) relative jump-time errors against α, run (solid) and exact flow (dashed), a colour per
    jump; (b) the same times log(1/α), flat as α → 0 (C / log(1/α), docs/theory.md §5.2);
    (c) saddle-value errors; (d) the run against the flow at the same α (GD's O(lr) error):
    against the step size when the sweep has several, else against α."""
    fig, (a, b, c, e) = plt.subplots(1, 4, figsize=(19, 4.8))
    for key, style in (("jump_errors", "o-"), ("flow_errors", "s--")):
        for k, alphas, errors in _per_jump(rows, key, "alpha"):
            a.loglog(alphas, np.maximum(errors, 1e-17), style, color=f"C{k - 1}")
            b.semilogx(alphas, errors * np.log(1 / alphas), style, color=f"C{k - 1}")
    a.set(xlabel="α (initialisation scale)", ylabel="|t − t_limit| / t_limit",
          title="(a) Jump times against the limit")
    b.set(xlabel="α", ylabel="|t − t_limit| / t_limit × log(1/α)",
          title="(b) … times log(1/α): flat as α → 0")
    b.set_ylim(bottom=0)
    values = sorted((r["alpha"], r["value_error"]) for r in rows if r["value_error"] is not None)
    if values:
        c.loglog(*zip(*values), "o-", color="0.3")
    c.set(xlabel="α", ylabel="max |L_run − L_limit| / L_limit",
          title="(c) The run's losses at the saddles")
    lrs = {r["lr"] for r in rows}
    x = "lr" if len(lrs) > 1 else "alpha"
    for k, xs, errors in _per_jump(rows, "step_errors", x):
        e.loglog(xs, np.maximum(errors, 1e-17), "o-", color=f"C{k - 1}")
    e.set(xlabel="step size lr" if x == "lr" else f"α (lr = {next(iter(lrs)):g})",
          ylabel="|t_run − t_flow| / t_flow", title="(d) The run against the exact flow, same α")
    jumps = max((len(r["jump_errors"]) for r in rows), default=0)
    handles = [plt.Line2D([], [], color=f"C{k}", lw=3) for k in range(jumps)]
    handles += [plt.Line2D([], [], color="k", ls="-", marker="o"),
                plt.Line2D([], [], color="k", ls="--", marker="s")]
    labels = [f"jump {k + 1}" for k in range(jumps)] + ["run (GD/SGD)", "exact flow, same α"]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.9, bottom=0.22, wspace=0.28)
    return fig


def aggregate(root: Path, out: Path | None = None) -> list[dict]:
    """Write aggregate.md, aggregate.csv and aggregate.png into `out` (default: the sweep
    folder)."""
    out = out or root
    rows = collect(root)
    out.mkdir(parents=True, exist_ok=True)
    (out / "aggregate.md").write_text(markdown(rows))
    with open(out / "aggregate.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fig = figure(rows)
    fig.savefig(out / "aggregate.png", dpi=100)
    plt.close(fig)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Aggregate the summary.json files of a sweep into "
                                     "a table and a figure, listing the jobs that did not "
                                     "complete.")
    parser.add_argument("sweep", type=Path, help="folder holding the runs (searched recursively)")
    parser.add_argument("--out", type=Path, help="where to write aggregate.{md,csv,png} (default: "
                        "the sweep folder)")
    args = parser.parse_args()
    rows = aggregate(args.sweep, args.out)
    print(markdown(rows))
    for line in incomplete(rows):
        print(f"aggregate: {line}")
    print(f"-> {(args.out or args.sweep) / 'aggregate.md'}, aggregate.csv, aggregate.png")


if __name__ == "__main__":
    main()
