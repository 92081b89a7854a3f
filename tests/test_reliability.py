"""Nothing lost: divergence stops cleanly, interrupted runs resume bit for bit, bad values fail
early."""

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlnlab.checks import ConfigError
from dlnlab.train import train
from tests.conftest import compose_cfg

RUN = ("data=fixture", "model.alpha=1e-30", "run.t_max=20",
       "+callbacks.losses._target_=dlnlab.callbacks.LossFile",
       "callbacks.checkpoints.every_s=0",  # a checkpoint every unit of t, however fast the run
       "run.engine=torch")  # the fused engine finishes this run before a signal can reach it


def run_in(out: Path, *overrides: str) -> dict:
    return train(compose_cfg("trainer.enable_progress_bar=false", f"run.output_dir={out}",
                             *overrides))


def losses(out: Path) -> np.ndarray:
    return np.fromfile(out / "losses.f64")


def checkpoint_step(out: Path) -> int:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, run_in(out, *RUN)


ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "dlnlab.cli"]  # this checkout's code, whatever dlnlab-train imports
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start(out: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "trainer.enable_progress_bar=false", f"hydra.run.dir={out}",
                             *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=ENV)


def wait_for_steps(out: Path, steps: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not ((out / "losses.f64").exists() and (out / "losses.f64").stat().st_size >= 8 * steps
               and (out / "checkpoints" / "last.ckpt").exists()):
        assert proc.poll() is None and time.time() < deadline, \
            "the run ended before it could be interrupted"
        time.sleep(0.05)


def assert_resumed_run_is_identical(first: Path, resumed: Path,
                                    reference: tuple[Path, dict]) -> None:
    step = checkpoint_step(first)
    whole = np.concatenate([losses(first)[:step], losses(resumed)])
    assert np.array_equal(whole, losses(reference[0]))  # bit for bit
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["beta"] == reference[1]["beta"]
    assert summary["plateaus"] == reference[1]["plateaus"]
    assert summary["saddles"] == reference[1]["saddles"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_bit_for_bit(tmp_path, uninterrupted, sig):
    """SIGKILL: resume from the last periodic checkpoint. SIGTERM: the run stops at the end of its
    block, writes a final checkpoint and summary (status interrupted), and resumes from there."""
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
    sgd = ("optim=sgd", "optim.batch_size=3", "data.n=10", "data.d=15", "model.alpha=1e-5",
           "run.t_max=3", "+callbacks.losses._target_=dlnlab.callbacks.LossFile",
           "run.steps_per_call=100")
    reference = tmp_path / "reference"
    reference_summary = run_in(reference, *sgd)
    first = tmp_path / "first"
    stopped = run_in(first, *sgd, "+callbacks.stop._target_=tests.test_reliability.StopAt",
                     "+callbacks.stop.step=1234")
    assert stopped["status"] == "interrupted"
    assert stopped["steps"] == 1400  # at the end of the next block
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
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.isfinite(saved["stack.network.p"]).all()  # never a diverged checkpoint
    suggested = re.search(r"try optim.lr=([0-9.e-]+)", message).group(1)
    suggested = run_in(tmp_path / "suggested", f"optim.lr={suggested}", "run.t_max=10")
    assert suggested["status"] == "completed"


def test_diverged_run_exits_non_zero_with_the_message(tmp_path):
    proc = subprocess.run([*CLI, "trainer.enable_progress_bar=false", "optim.lr=2", "run.t_max=50",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=ENV)
    assert proc.returncode == 1
    assert "dlnlab-train: the loss diverged at step" in proc.stderr
    assert "try optim.lr=" in proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_a_diverged_run_keeps_its_last_good_checkpoint_and_replays_from_it(tmp_path):
    """The checkpoint is the last before the divergence (here the one at the start: the loss
    diverges at step 22, t = 1.9, before the first at t = 1 is due at a block's end), with finite
    parameters; the summary stops at the divergence step. Resuming from it with the same settings
    takes the same steps to the same divergence; with a smaller step it is another run: refused."""
    args = ("data.seed=0", "model.alpha=1e-10", "optim.lr=2", "run.t_max=50", "~logger",
            "~callbacks.figures", "callbacks.checkpoints.every_s=0",
            "+callbacks.losses._target_=dlnlab.callbacks.LossFile")
    summary = run_in(tmp_path / "diverged", *args)
    assert summary["status"] == "diverged" and summary["steps"] == 22
    assert summary["t_reached"] == pytest.approx(22 * 2 / math.log(1e10))
    assert "the loss diverged at step 22 (t = 1.911)" in summary["message"]
    assert len(losses(tmp_path / "diverged")) == 22  # the losses before the divergence, all finite
    assert np.isfinite(losses(tmp_path / "diverged")).all()
    ckpt = tmp_path / "diverged" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["global_step"] == 0
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    again = run_in(tmp_path / "again", *args, f"ckpt_path={ckpt}")
    assert (again["status"], again["steps"]) == ("diverged", 22)
    assert again["message"] == summary["message"]
    assert np.array_equal(losses(tmp_path / "again"), losses(tmp_path / "diverged"))
    with pytest.raises(ConfigError, match=re.escape("optim.lr (2 there, 0.08 here)")):
        run_in(tmp_path / "smaller", *args, "optim.lr=0.08", f"ckpt_path={ckpt}")


@pytest.mark.parametrize("overrides, message", [
    (["model.dtype=float32", "model.alpha=1e-30"], "smallest safe α is 1e-18"),
    (["model.alpha=1e-200"], "smallest safe α is 1e-150"),
    (["ckpt_path=/nonexistent/last.ckpt"], "no such checkpoint"),
    (["run.divergence_factor=1"], "run.divergence_factor=1.0 must be > 1"),
    (["run.record_every_t=0"], "run.record_every_t=0.0 must be a positive"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 must be a positive step cap"),
    (["model=symmetric", "model.depth=3", "run.t_max=10"], "run.t_max=10 needs 3.33e+12 steps"),
    (["model=symmetric", "model.depth=50", "model.alpha=0.5", "run.t_max=10"],  # α above 0.5
     "run.t_max=10 needs 1.17e+14 steps (T_α = 1.17e+11 for model.alpha=0.5 at model.depth=50, "
     "optim.lr=0.01): use model.alpha ≥ 0.64, a larger step"),
    (["model=symmetric", "model.depth=50", "model.alpha=0.5", "trainer.max_steps=10"],
     "model.alpha=0.5 at model.depth=50: its exact flow (the theory the run is compared with) "
     "would have to resolve α^(L−2) = 3.6e-15 next to 1, below float64's 1e-12: use "
     "model.alpha ≥ 0.57"),
    (["model=symmetric", "model.depth=400", "model.alpha=0.1", "run.t_max=10"],
     "use model.alpha ≥ 0.94"),
    (["model.alpha=0.999", "run.t_max=10"],
     "run.t_max=10 takes 2 steps of optim.lr=0.01, each covering 9.99 of accelerated time (T_α = "
     "0.001 for model.alpha=0.999): too coarse to follow the flow (at least 10 steps, or steps "
     "within 1): use model.alpha ≤ 0.99, optim.lr ≤ 0.001 or a longer run.t_max"),
])
def test_more_bad_values(run, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(*overrides)


def test_an_advised_alpha_runs(run):
    """The α the messages above advise is one that runs (capped to a few steps)."""
    quick = ("trainer.max_steps=3", "~logger", "~callbacks.figures")
    assert run("model=symmetric", "model.depth=50", "model.alpha=0.64", *quick)["status"] == \
        "completed"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # and without the warning below
        assert run("model.alpha=0.99", "run.t_max=10", *quick)["status"] == "completed"


def test_a_step_of_more_than_a_unit_of_accelerated_time_warns_over_a_long_run(run):
    warning = ("a step of optim.lr=0.01 covers 9.99 of accelerated time (T_α = 0.001 for "
               "model.alpha=0.999): the run jumps over the theory's events; optim.lr ≤ 0.001 keeps "
               "a step within 1")
    with pytest.warns(UserWarning, match=re.escape(warning)):
        run("model.alpha=0.999", "run.t_max=1000", "trainer.max_steps=3", "~logger",
            "~callbacks.figures")


# Disk full, read-only: a write that fails is one line naming the file and the cause, and what was
# written before stays whole.

WRITES = ("data.n=10", "data.d=15", "model.alpha=1e-5", "run.t_max=2", "~logger",
          "~callbacks.figures", "callbacks.checkpoints.every_s=0")  # checkpoints at t = 0, 1, 2


def whole_checkpoint(path: Path) -> dict:
    """The checkpoint at path, checked whole (every part's CRC) and loaded."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    return torch.load(path, weights_only=True)


class FailWrites:
    """torch.save raising OSError(errno) from the second checkpoint on (the first, at the start
    of training, is written)."""

    def __init__(self, code: int):
        self.code, self.calls, self.save = code, 0, torch.save

    def __call__(self, obj, f, *args, **kwargs):
        self.calls += 1
        if self.calls > 1:
            raise OSError(self.code, os.strerror(self.code))
        return self.save(obj, f, *args, **kwargs)


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "No space left on device (ENOSPC)"),
                                         (errno.EROFS, "Read-only file system (EROFS)")])
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch,
                                                                      code, cause):
    monkeypatch.setattr(torch, "save", FailWrites(code))
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        run_in(out, *WRITES)
    ckpt = out / "checkpoints" / "last.ckpt"
    assert str(info.value).startswith(f"cannot write {ckpt}: {cause}: ")
    assert "hydra.run.dir=<folder>" in str(info.value)
    monkeypatch.undo()
    assert whole_checkpoint(ckpt)["global_step"] == 0  # the one written at the start
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.ckpt"]  # no partial file
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["message"] == str(info.value)


def test_a_summary_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    from dlnlab import files as summary

    path = tmp_path / "summary.json"
    summary.write_json(path, {"status": "completed"})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(summary.os, "fsync", full)
    with pytest.raises(ConfigError, match=re.escape(f"cannot write {path}: No space left on "
                                                    "device (ENOSPC): free space on its disk")):
        summary.write_json(path, {"status": "failed"})
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


# A real small or read-only filesystem: a tmpfs, mounted where this user may (root), else skipped.

def _mount(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")


@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        _mount(where, options)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


class Fill(pl.Callback):
    """Once past `step`: fill the disk of the run's folder (how="full") or remount it read-only
    (how="ro"), so that the next checkpoint's write fails for real."""

    def __init__(self, step: int, how: str):
        self.step, self.how = step, how

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.step is None or trainer.global_step < self.step:
            return
        self.step = None
        folder = Path(trainer.default_root_dir)
        if self.how == "ro":
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)
            return
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)


@pytest.mark.parametrize("how, cause", [("full", "No space left on device (ENOSPC)"),
                                        ("ro", "Read-only file system (EROFS)")])
def test_a_full_or_read_only_disk_mid_run_keeps_what_was_written(tmpfs, how, cause):
    out = tmpfs("disk", "size=1m")
    with pytest.raises(ConfigError) as info:  # checkpoints at steps 0 and 1200, then the end's
        run_in(out, *WRITES, "run.steps_per_call=100",
               "+callbacks.fill._target_=tests.test_reliability.Fill", "+callbacks.fill.step=1250",
               f"+callbacks.fill.how={how}")
    ckpt = out / "checkpoints" / "last.ckpt"
    assert str(info.value).startswith(f"cannot write {ckpt}: {cause}")
    assert whole_checkpoint(ckpt)["global_step"] == 1200  # the checkpoint at t = 1
    assert not (out / "checkpoints" / "last.partial").exists()


def test_a_read_only_output_folder_is_one_line_before_any_work(tmpfs, tmp_path):
    out = tmpfs("ro", "size=64k,ro")
    with pytest.raises(ConfigError, match=re.escape(f"cannot write {out}: Read-only file system "
                                                    "(EROFS): make its folder writable")):
        run_in(out, *WRITES)
    assert list(out.iterdir()) == []
