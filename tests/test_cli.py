"""The console script end to end, in a subprocess, as a user runs it."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.test_sweeps import command, env, wait_for

# min ‖β‖₁ s.t. Xβ = y on the worked example (docs/theory.md §3)
L1_INTERPOLATOR = np.array([0, 0, 10 / 7, -10 / 49])


def dlnlab_train(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(command("trainer.enable_progress_bar=false", *overrides), cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_worked_example_ends_at_the_minimum_l1_interpolator(tmp_path):
    """docs/theory.md §5: at alpha = 1e-30 the flow ends within 1e-4 of the minimum-ℓ1
    interpolator."""
    proc = dlnlab_train(tmp_path, "data=fixture", "model.alpha=1e-30", "run.t_max=20")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["t_reached"] >= 20
    assert np.abs(np.array(summary["beta"]) - L1_INTERPOLATOR).max() < 1e-3
    assert summary["final_loss"] < 1e-10
    events = EventAccumulator(str(run_dir / "tb" / "run")).Reload()
    assert {"loss", "time/accelerated"} <= set(events.Tags()["scalars"])
    loss = events.Scalars("loss")
    assert loss[0].step == 0 and loss[0].value == pytest.approx(0.25)  # L(0) = ‖y‖²/(2n)
    assert 100 < len(loss) < 5000  # on a schedule, not every one of the 138k steps


def test_implicit_bias_approaches_l1_only_slowly(run):
    """docs/theory.md §5: at alpha = 1e-4 GD ends near (0.33, 0, 0.96, −0.37), far from the ℓ1
    interpolator; both end points interpolate (loss ≈ 0): only the implicit bias differs."""
    s = run("data=fixture", "model.alpha=1e-4", "run.t_max=30")
    beta = np.array(s["beta"])
    np.testing.assert_allclose(beta, [0.33, 0, 0.96, -0.37], atol=0.02)
    assert np.abs(beta - L1_INTERPOLATOR).max() > 0.3
    assert s["final_loss"] < 1e-10


@pytest.mark.slow
def test_overrides_and_experiment_and_depth(tmp_path):
    proc = dlnlab_train(tmp_path, "model=symmetric", "model.depth=3", "model.alpha=0.05",
                        "data.n=10", "data.d=15", "optim=sgd", "optim.batch_size=5", "run.t_max=1",
                        "logger=tensorboard")
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    cfg = json.loads((run_dir / "summary.json").read_text())["config"]
    assert cfg["model"]["depth"] == 3 and cfg["optim"]["method"] == "sgd"


@pytest.mark.parametrize("override, message", [
    ("model.alpha=-1", "dlnlab-train: error: model.alpha=-1 must be a number in (0, 1)"),
    ("model.alpha=abc",
     "dlnlab-train: error: model.alpha='abc' must be a number or a list of them"),
    ("model.alpah=1e-3", "Key 'alpah' not in 'UVModelConfig'"),
    ("data.path=x.npz", "Key 'path' not in 'SyntheticDataConfig'"),
    ("run.output_dir=elsewhere", "run.output_dir=elsewhere is for train() called from Python: "
                                "dlnlab-train writes where Hydra says, so pass "
                                "hydra.run.dir=<folder>"),
])
def test_bad_override_is_one_clear_message_and_no_run(tmp_path, override, message):
    proc = dlnlab_train(tmp_path, override)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("outputs/runs/*/summary.json"))


@pytest.mark.slow
def test_saddles_command_prints_and_writes_the_table(tmp_path):
    def saddles(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dlnlab.saddles", *args], cwd=tmp_path,
                              env=env(), capture_output=True, text=True, timeout=120)

    proc = saddles("data=fixture")
    assert proc.returncode == 0, proc.stderr
    assert "-0" in proc.stdout.splitlines()[3]  # k = 2: coordinate 0 leaves
    (out,) = tmp_path.glob("outputs/saddles/*/saddles.json")
    table = json.loads(out.read_text())
    assert [row["t"] for row in table["saddles"]] == pytest.approx([0, 2, 8, 552 / 49])
    assert [row["leaving"] for row in table["saddles"]] == [[], [], [0], []]
    bad = saddles("data=file")
    assert bad.returncode == 2 and "data.path has no value" in bad.stderr
    # a sweep of it: each job's result is its saddles.json (conf/saddles.yaml), none is missing
    swept = saddles("-m", "data.seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert swept.returncode == 0, swept.stderr
    assert len(list((tmp_path / "sweep").glob("*/saddles.json"))) == 2


@pytest.mark.parametrize("override, message", [
    ("logger=null", "dlnlab-train: error: logger=null: logger is a config group, which takes an "
                    "option name: remove it with ~logger (e.g. dlnlab-train ~logger)"),
    ("run.t_max=${nope}", "dlnlab-train: error: run.t_max=${nope} cannot be resolved "
                          "(Interpolation key 'nope' not found): give a value, or an interpolation "
                          "of an existing key (e.g. ${run.seed})"),
])
def test_null_group_and_unresolvable_interpolation_are_one_line_exit_2(tmp_path, override, message):
    proc = dlnlab_train(tmp_path, override)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == message
    assert not list(tmp_path.glob("outputs/runs/*/summary.json"))


LONG = ("data=fixture", "model.alpha=1e-30", "run.t_max=1000", "run.engine=torch",
        "+callbacks.losses._target_=dlnlab.callbacks.LossFile")


def start(out: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(command("trainer.enable_progress_bar=false", f"hydra.run.dir={out}",
                                    *overrides), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_run_exits_128_plus_the_signal_with_its_summary(tmp_path, sig, status):
    """A scheduler's SIGTERM (or one Ctrl-C): the run stops at the end of its block, writes its
    checkpoint, summary (status interrupted, the signal, the saddles comparison) and figures like
    a completed run, and exits 128 + the signal, not 0."""
    proc = start(tmp_path, *LONG)
    try:
        wait_for(lambda: (tmp_path / "losses.f64").exists() and
                 (tmp_path / "losses.f64").stat().st_size > 0, proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == sig.name
    assert summary["saddles"] and summary["saddles"][0]["t_limit"] == 0
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"loss.png", "coordinates.png", "dual.png"} <= figures
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert f"interrupted by {sig.name}: resume with ckpt_path=" in stderr


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_inside_a_long_fused_block(tmp_path):
    """One block of 4 million compiled steps (a minute here): the first Ctrl-C asks for a stop at
    its end; the second ends the process at once (killed by SIGINT, 130 in a shell)."""
    proc = start(tmp_path, "data.n=100", "data.d=200", "model.alpha=1e-10", "run.t_max=10000",
                 "run.engine=fused", "run.steps_per_call=100000000", "run.record_every_t=1000",
                 "~callbacks.theory")
    try:
        wait_for(lambda: (tmp_path / "checkpoints" / "last.ckpt").exists(), proc)
        time.sleep(2)  # past on_train_start (the handlers), inside the first block
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        elapsed = time.time() - sent
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGINT
    assert elapsed < 5


def test_help_and_configuration_errors_answer_before_the_heavy_imports():
    """`--help` and every configuration error are answered by dlnlab.cli and the torch-free
    checks: importing the command line must not import torch, Lightning, TensorBoard, matplotlib
    or numba (each costs seconds; the benchmark times the whole answer)."""
    heavy = ["torch", "lightning", "tensorboard", "matplotlib", "numba"]
    code = ("import sys, dlnlab.cli, dlnlab.preflight, dlnlab.sweeps; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_note_about_the_data_is_one_line_however_many_replicas(tmp_path):
    """d above theory.flow_max_d and callbacks.effective_alpha.max_d is the same for every replica:
    one line each, not one per replica."""
    out = subprocess.run(
        command("data.n=10", "data.d=30", "theory.flow_max_d=20",
                "callbacks.effective_alpha.max_d=20", "model.shape=random",
                "model.shape_seed=[1,2,3,4]", "run.t_max=0.3",
                "~callbacks.figures", f"hydra.run.dir={tmp_path}/run"),
        env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert sum("d = 30 > theory.flow_max_d = 20" in line for line in lines) == 1
    assert sum("d = 30 > callbacks.effective_alpha.max_d = 20" in line for line in lines) == 1
