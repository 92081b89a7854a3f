"""Sweeps (dlnlab-train -m) end to end, in subprocesses, as a user runs them: every point checked
before any job starts, a failing job never stops the others, the sweep's exit status and report
name the jobs that did not complete, and the aggregation lists them (dlnlab/sweeps.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightning.pytorch import Callback

from dlnlab.aggregate import aggregate

ROOT = Path(__file__).resolve().parent.parent
FAST = ("trainer.enable_progress_bar=false", "data=fixture", "run.t_max=3")


class Boom(Callback):
    """Raises in the middle of the run whose α is `alpha` (a crash at run time, not a bad value)."""

    def __init__(self, alpha: float, step: int = 2000):
        self.alpha, self.step = alpha, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step and pl_module.replicas[0].model.alpha == self.alpha:
            raise RuntimeError(f"boom at step {trainer.global_step}")


def env() -> dict:
    """This checkout first on the path (not whichever dlnlab the console script would import)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlnlab.cli", *args]


def sweep(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command("-m", *args), cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def summaries(folder: Path) -> dict[str, dict]:
    """Each job folder's summary.json by the folder's number ("0", "1", ...)."""
    return {path.parent.name.split("_")[0]: json.loads(path.read_text())
            for path in folder.glob("*/summary.json")}


LAUNCHERS = {"basic": [], "local": ["hydra/launcher=local"],
             "slurm": ["hydra/launcher=slurm", "hydra.launcher.partition=none"]}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_bad_points_are_all_listed_and_nothing_runs(tmp_path, launcher):
    """1e-5 and 1e-10 are valid, 2 and 1e-200 not: exit 2, one line per bad point, no job run
    (with SLURM: nothing submitted)."""
    out = tmp_path / "sweep"
    proc = sweep(tmp_path, *FAST, *LAUNCHERS[launcher], "model.alpha=1e-5,2,1e-10,1e-200",
                 f"hydra.sweep.dir={out}", timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dlnlab-train:")]
    assert errors == [
        "dlnlab-train: error: job 1 (model.alpha=2): model.alpha=2 must be a number in (0, 1), the "
        "initialisation scale (e.g. alpha=1e-10)",
        "dlnlab-train: error: job 3 (model.alpha=1e-200): model.alpha=1e-200 is too small for "
        "float64, whose smallest safe α is 1e-150 (u − v ∝ α² underflows): use "
        "dlnlab.theory.flow, which takes log α, or alpha ≥ 1e-150",
        "dlnlab-train: error: 2 of 4 sweep points are invalid: nothing was run; fix or drop them",
    ]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # no job started, not even its folder


def test_an_unresolvable_interpolation_in_a_sweep_is_a_bad_point(tmp_path):
    proc = sweep(tmp_path, *FAST, "run.t_max=1,${nope}", f"hydra.sweep.dir={tmp_path / 's'}",
                 timeout=120)
    assert proc.returncode == 2
    assert ("dlnlab-train: error: job 1 (run.t_max=${nope}): run.t_max=${nope} cannot be resolved "
            "(Interpolation key 'nope' not found)") in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s").exists()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_a_failing_job_keeps_its_summary_and_the_others_run(tmp_path, launcher):
    """Job 1 crashes at run time (after its first checkpoint): it leaves summary.json (failed, the
    message) and its checkpoint; jobs 0 and 2 complete; the sweep exits 1 naming job 1."""
    out = tmp_path / "sweep"
    args = ["hydra/launcher=local", "hydra.launcher.n_jobs=2"] if launcher == "local" else []
    proc = sweep(tmp_path, *FAST, *args, "model.alpha=1e-5,1e-10,1e-20",
                 "+callbacks.boom._target_=tests.test_sweeps.Boom", "+callbacks.boom.alpha=1e-10",
                 f"hydra.sweep.dir={out}")
    assert proc.returncode == 1, proc.stderr
    found = summaries(out)
    assert {key: s["status"] for key, s in found.items()} == \
        {"0": "completed", "1": "failed", "2": "completed"}
    assert found["1"]["message"].startswith("boom at step")
    assert found["0"]["saddles"] and found["2"]["saddles"]
    (failed,) = out.glob("1_*")
    assert (failed / "checkpoints" / "last.ckpt").exists()  # what it wrote is kept
    assert "dlnlab-train: error: job 1 (" in proc.stderr and "failed: RuntimeError: boom" \
        in proc.stderr
    assert f"dlnlab-train: failed: {failed.name}: boom at step" in proc.stderr
    assert f"dlnlab-train: sweep: 3 jobs: 2 completed, 1 failed -> {out}" in proc.stdout
    listed = json.loads((out / "jobs.json").read_text())["jobs"]
    assert [job["dir"] for job in listed] == sorted(p.name for p in out.glob("[0-9]_*"))


@pytest.mark.slow
def test_submitit_sweep_pickles_each_job_and_aggregates(tmp_path):
    """The SLURM launcher's plugin with its local executor (hydra/launcher=submitit_local): each
    job pickled and run in its own process with its own submitit folder. Job 1 crashes: its
    summary says so, job 0 completes, the sweep exits 1, and the aggregation lists both."""
    out = tmp_path / "sweep"
    proc = sweep(tmp_path, *FAST, "hydra/launcher=submitit_local", "model.alpha=1e-5,1e-10",
                 "+callbacks.boom._target_=tests.test_sweeps.Boom", "+callbacks.boom.alpha=1e-10",
                 f"hydra.sweep.dir={out}")
    assert proc.returncode == 1, proc.stderr
    found = summaries(out)
    assert found["0"]["status"] == "completed" and found["0"]["saddles"]
    assert found["1"]["status"] == "failed" and found["1"]["message"].startswith("boom at step")
    assert len(list((out / ".submitit").glob("*/*.pkl"))) >= 2  # the pickled jobs
    assert f"dlnlab-train: sweep: 2 jobs: 1 completed, 1 failed -> {out}" in proc.stdout
    rows = aggregate(out)
    assert [(r["alpha"], r["status"]) for r in rows] == [(1e-10, "failed"), (1e-05, "completed")]
    assert "did not complete" in (out / "aggregate.md").read_text()


def test_aggregate_lists_failed_and_missing_jobs(tmp_path, capsys):
    """A sweep folder: a completed job, a failed one, one whose folder has no summary.json (killed)
    and one in jobs.json that never started: all four in the table and on stdout."""
    completed = {"status": "completed", "alpha": 1e-5, "lr": 0.01, "saddles": [],
                 "config": {"optim": {"method": "gd"}}}
    failed = {"status": "failed", "message": "boom at step 2000",
              "config": {"model": {"alpha": 1e-10}, "optim": {"method": "gd", "lr": 0.01}}}
    for name, summary in (("0_a=1", completed), ("1_a=2", failed), ("2_a=3", None)):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        if summary:
            (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": [
        {"num": i, "overrides": [f"a={i + 1}"], "dir": f"{i}_a={i + 1}"} for i in range(4)]}))
    from dlnlab.aggregate import main

    sys_argv, sys.argv = sys.argv, ["dlnlab-aggregate", str(tmp_path)]
    try:
        main()
    finally:
        sys.argv = sys_argv
    stdout = capsys.readouterr().out
    assert "aggregate: failed: 1_a=2: boom at step 2000" in stdout
    assert "aggregate: missing: 2_a=3: no summary.json: the job did not start or was killed" \
        in stdout
    assert "aggregate: missing: 3_a=4: no summary.json" in stdout
    table = (tmp_path / "aggregate.md").read_text()
    assert "| 1_a=2 | 1e-10 | 0.01 | failed |" in table and "| 3_a=4 | — | — | missing |" in table
    assert "3 of 4 did not complete" in table
    rows = aggregate(tmp_path)
    assert [r["status"] for r in rows] == ["failed", "completed", "missing", "missing"]


@pytest.mark.slow
def test_sigterm_stops_the_sweep_with_143(tmp_path):
    """SIGTERM during job 0 of a sweep (basic launcher, one process): job 0 stops at the end of its
    block with its summary (interrupted, SIGTERM), job 1 never starts (missing), exit 143."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        command("-m", *FAST[:2], "run.t_max=1000", "run.engine=torch", "model.alpha=1e-30,1e-20",
                "+callbacks.losses._target_=dlnlab.callbacks.LossFile", f"hydra.sweep.dir={out}"),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(p.stat().st_size for p in out.glob("0_*/losses.f64")), proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    found = summaries(out)
    assert list(found) == ["0"] and found["0"]["status"] == "interrupted"
    assert found["0"]["signal"] == "SIGTERM"
    assert "not started: the sweep was interrupted (SIGTERM)" in stderr
    (missing,) = out.glob("1_*")  # its folder (Hydra's) and nothing in it
    assert f"dlnlab-train: missing: {missing.name}: no summary.json" in stderr


@pytest.mark.slow
def test_ctrl_c_in_a_joblib_sweep_keeps_the_running_jobs_summaries(tmp_path):
    """Ctrl-C in the terminal reaches the sweep and its joblib workers: the two running jobs stop
    at the end of their block with their summaries (interrupted, SIGINT) instead of being killed
    with the sweep, job 2 never starts, and the sweep exits 130."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        command("-m", *FAST[:2], "run.t_max=1000", "run.engine=torch", "hydra/launcher=local",
                "model.alpha=1e-30,1e-20,1e-10", f"hydra.sweep.dir={out}",
                "+callbacks.losses._target_=dlnlab.callbacks.LossFile"),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group, as a terminal's foreground job
    try:
        wait_for(lambda: sum(p.stat().st_size > 0 for p in out.glob("*/losses.f64")) == 2, proc)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    found = summaries(out)
    assert {key: (s["status"], s["signal"]) for key, s in found.items()} == \
        {"0": ("interrupted", "SIGINT"), "1": ("interrupted", "SIGINT")}
    assert "Traceback" not in stderr
    assert "dlnlab-train: sweep: 3 jobs: 2 interrupted, 1 missing" in stdout
    assert "stopped by SIGINT: resume with ckpt_path=" in stderr


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)
