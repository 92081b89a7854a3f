"""The console script end to end, in a subprocess, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

L1_INTERPOLATOR = np.array([0, 0, 10 / 7, -10 / 49])  # min ‖β‖₁ s.t. Xβ = y on the worked example (docs/theory.md §3)


def dlnlab_train(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "dlnlab-train"
    return subprocess.run([str(script), "trainer.enable_progress_bar=false", *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_worked_example_ends_at_the_minimum_l1_interpolator(tmp_path):
    """docs/theory.md §5: at alpha = 1e-30 the flow ends within 1e-4 of the minimum-ℓ1 interpolator."""
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
    """docs/theory.md §5: at alpha = 1e-4 GD ends near (0.33, 0, 0.96, −0.37), far from the ℓ1 interpolator;
    both end points interpolate (loss ≈ 0): only the implicit bias differs."""
    s = run("data=fixture", "model.alpha=1e-4", "run.t_max=30")
    beta = np.array(s["beta"])
    np.testing.assert_allclose(beta, [0.33, 0, 0.96, -0.37], atol=0.02)
    assert np.abs(beta - L1_INTERPOLATOR).max() > 0.3
    assert s["final_loss"] < 1e-10


@pytest.mark.slow
def test_overrides_and_experiment_and_depth(tmp_path):
    proc = dlnlab_train(tmp_path, "model=symmetric", "model.depth=3", "model.alpha=0.05", "data.n=10", "data.d=15",
                        "optim=sgd", "optim.batch_size=5", "run.t_max=1", "logger=tensorboard")
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    cfg = json.loads((run_dir / "summary.json").read_text())["config"]
    assert cfg["model"]["depth"] == 3 and cfg["optim"]["method"] == "sgd"


@pytest.mark.parametrize("override, message", [
    ("model.alpha=-1", "dlnlab-train: error: model.alpha=-1 must be a number in (0, 1)"),
    ("model.alpha=abc", "dlnlab-train: error: model.alpha='abc' must be a number or a list of them"),
    ("model.alpah=1e-3", "Key 'alpah' not in 'UVModelConfig'"),
    ("data.path=x.npz", "Key 'path' not in 'SyntheticDataConfig'"),
    ("run.output_dir=elsewhere", "run.output_dir=elsewhere is for train() called from Python: dlnlab-train writes "
                                "where Hydra says, so pass hydra.run.dir=<folder>"),
])
def test_bad_override_is_one_clear_message_and_no_run(tmp_path, override, message):
    proc = dlnlab_train(tmp_path, override)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("outputs/runs/*/summary.json"))


@pytest.mark.slow
def test_saddles_command_prints_and_writes_the_table(tmp_path):
    script = Path(sys.executable).parent / "dlnlab-saddles"
    proc = subprocess.run([str(script), "data=fixture"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "-0" in proc.stdout.splitlines()[3]  # k = 2: coordinate 0 leaves
    (out,) = tmp_path.glob("outputs/saddles/*/saddles.json")
    table = json.loads(out.read_text())
    assert [row["t"] for row in table["saddles"]] == pytest.approx([0, 2, 8, 552 / 49])
    assert [row["leaving"] for row in table["saddles"]] == [[], [], [0], []]
    bad = subprocess.run([str(script), "data=file"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "data.path has no value" in bad.stderr
