"""Experiment configs, a parallel sweep on the joblib launcher, and its aggregation."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlnlab.aggregate import aggregate
from dlnlab.config import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def test_the_issue_s_experiments_exist():
    assert {"fig1", "deactivation", "sparse_recovery", "underparametrised", "depth3", "sgd"} <= set(
        EXPERIMENTS
    )


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_runs_with_a_short_horizon(run, name):
    summary = run(f"experiment={name}", "run.t_max=0.3", "~callbacks.figures")
    assert summary["status"] == "completed" and summary["t_reached"] >= 0.3
    if name == "large_steps":  # α = 0.1: no saddle plateaus (its checks: tests/test_large_steps.py)
        assert summary["left_regime"] is None and summary["effective_alpha"]["min"] < 1
        return
    assert summary["saddles"][0]["loss_run"] == pytest.approx(
        summary["saddles"][0]["loss_limit"], rel=1e-4
    )


@pytest.mark.slow
def test_joblib_sweep_runs_two_jobs_apart_and_aggregates(tmp_path):
    script = Path(sys.executable).parent / "dlnlab-train"
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            str(script),
            "-m",
            "hydra/launcher=local",
            "trainer.enable_progress_bar=false",
            "experiment=fig1",
            "run.t_max=1",
            "~callbacks.figures",
            "model.alpha=1e-10,1e-20",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p.parent for p in sweep.rglob("summary.json"))
    assert [j.name for j in jobs] == ["0_experiment=fig1,model.alpha=1e-10,run.t_max=1",
                                      "1_experiment=fig1,model.alpha=1e-20,run.t_max=1"]
    for job in jobs:  # each job its own directory and event file
        assert [
            len(list((job / "tb" / s).glob("events.out.tfevents.*")))
            for s in ("run", "flow", "limit")
        ] == [1, 1, 1]
        assert json.loads((job / "summary.json").read_text())["status"] == "completed"
    rows = aggregate(sweep)
    assert sorted(r["alpha"] for r in rows) == [1e-20, 1e-10]
    assert all(r["reached"] == 1 and r["jump_errors"][0] is not None for r in rows)
    with open(sweep / "aggregate.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (
        "| 1e-20 |" in (sweep / "aggregate.md").read_text()
        and (sweep / "aggregate.png").stat().st_size > 10_000
    )
