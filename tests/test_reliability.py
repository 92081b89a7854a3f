"""Nothing lost: divergence stops cleanly, interrupted runs resume bit for bit, bad values fail early."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlnlab.checks import ConfigError
from dlnlab.train import train
from tests.conftest import compose_cfg

RUN = ("data=fixture", "model.alpha=1e-30", "run.t_max=20", "+callbacks.losses._target_=dlnlab.callbacks.LossFile",
       "callbacks.checkpoints.every_s=0",  # a checkpoint every unit of t, however fast the run
       "run.engine=torch")  # the fused engine finishes this run before a signal can reach it (resumes: tests below)


def run_in(out: Path, *overrides: str) -> dict:
    return train(compose_cfg("trainer.enable_progress_bar=false", f"run.output_dir={out}", *overrides))


def losses(out: Path) -> np.ndarray:
    return np.fromfile(out / "losses.f64")


def checkpoint_step(out: Path) -> int:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, run_in(out, *RUN)


def start(out: Path, *overrides: str) -> subprocess.Popen:
    script = Path(sys.executable).parent / "dlnlab-train"
    return subprocess.Popen([str(script), "trainer.enable_progress_bar=false", f"hydra.run.dir={out}", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_steps(out: Path, steps: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not ((out / "losses.f64").exists() and (out / "losses.f64").stat().st_size >= 8 * steps
               and (out / "checkpoints" / "last.ckpt").exists()):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)


def assert_resumed_run_is_identical(first: Path, resumed: Path, reference: tuple[Path, dict]) -> None:
    step = checkpoint_step(first)
    whole = np.concatenate([losses(first)[:step], losses(resumed)])
    assert np.array_equal(whole, losses(reference[0]))  # bit for bit
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["beta"] == reference[1]["beta"]
    assert summary["plateaus"] == reference[1]["plateaus"] and summary["saddles"] == reference[1]["saddles"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_bit_for_bit(tmp_path, uninterrupted, sig):
    """SIGKILL: resume from the last periodic checkpoint. SIGTERM: the run stops at the end of its block,
    writes a final checkpoint and summary (status interrupted), and resumes from there."""
    first = tmp_path / "first"
    proc = start(first, *RUN)
    wait_for_steps(first, 40_000, proc)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    if sig == signal.SIGTERM:
        summary = json.loads((first / "summary.json").read_text())
        assert summary["status"] == "interrupted", output
        assert checkpoint_step(first) == summary["steps"] < 138156
    resumed = tmp_path / "resumed"
    run_in(resumed, *RUN, f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}")
    assert_resumed_run_is_identical(first, resumed, uninterrupted)


class StopAt(Callback):
    """Asks the task to stop, as the signal handler does, once it has passed a step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            pl_module.stop_requested = True


def test_sgd_resumes_bit_for_bit(tmp_path):
    """The mini-batch sampler's generator and epoch order travel in the checkpoint."""
    sgd = ("optim=sgd", "optim.batch_size=3", "data.n=10", "data.d=15", "model.alpha=1e-5", "run.t_max=3",
           "+callbacks.losses._target_=dlnlab.callbacks.LossFile", "run.steps_per_call=100")
    reference = tmp_path / "reference"
    reference_summary = run_in(reference, *sgd)
    first = tmp_path / "first"
    stopped = run_in(first, *sgd, "+callbacks.stop._target_=tests.test_reliability.StopAt", "+callbacks.stop.step=1234")
    assert stopped["status"] == "interrupted" and stopped["steps"] == 1400  # at the end of the next block
    resumed = tmp_path / "resumed"
    run_in(resumed, *sgd, f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}")
    assert_resumed_run_is_identical(first, resumed, (reference, reference_summary))


def test_step_ten_times_too_large_diverges_cleanly(tmp_path):
    stable = run_in(tmp_path / "stable", "optim.lr=0.2", "run.t_max=10")
    assert stable["status"] == "completed"
    out = tmp_path / "diverging"
    summary = run_in(out, "optim.lr=2", "run.t_max=50")
    assert summary["status"] == "diverged"
    saved = json.loads((out / "summary.json").read_text())  # valid JSON: NaN became null
    assert saved["status"] == "diverged" and saved["final_loss"] is None
    message = saved["message"]
    assert "optim.lr=2" in message and "λ_max(XᵀX/n)" in message
    events = EventAccumulator(str(out / "tb" / "run")).Reload()
    assert len(events.Scalars("loss")) > 5  # the event file is intact and readable
    assert not (out / "checkpoints" / "last.ckpt").exists() or \
        torch.isfinite(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"][
            "stack.network.p"]).all()  # never a diverged checkpoint
    suggested = re.search(r"try optim.lr=([0-9.e-]+)", message).group(1)
    assert run_in(tmp_path / "suggested", f"optim.lr={suggested}", "run.t_max=10")["status"] == "completed"


def test_diverged_run_exits_non_zero_with_the_message(tmp_path):
    script = Path(sys.executable).parent / "dlnlab-train"
    proc = subprocess.run([str(script), "trainer.enable_progress_bar=false", "optim.lr=2", "run.t_max=50",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "dlnlab-train: the loss diverged at step" in proc.stderr and "try optim.lr=" in proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("overrides, message", [
    (["model.dtype=float32", "model.alpha=1e-30"], "smallest safe α is 1e-18"),
    (["model.alpha=1e-200"], "smallest safe α is 1e-150"),
    (["ckpt_path=/nonexistent/last.ckpt"], "no such checkpoint"),
    (["run.divergence_factor=1"], "run.divergence_factor=1.0 must be > 1"),
    (["run.record_every_t=0"], "run.record_every_t=0.0 must be a positive"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 must be a positive step cap"),
    (["model=symmetric", "model.depth=3", "run.t_max=10"], "run.t_max=10 needs 3.33e+12 steps"),
])
def test_more_bad_values(run, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(*overrides)
