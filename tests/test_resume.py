"""Resuming (dlnlab.resume): the checkpoint verified whole and its run compared with this one
before any work; what may change on resume continues bit for bit, anything else is one line."""

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from dlnlab import resume
from dlnlab.checks import ConfigError
from dlnlab.data import synthetic
from dlnlab.train import train
from tests.conftest import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
BASE = ("data.n=10", "data.d=15", "data.seed=0", "model.alpha=1e-5", "run.t_max=2", "~logger",
        "~callbacks.figures", "+callbacks.losses._target_=dlnlab.callbacks.LossFile",
        "callbacks.checkpoints.every_s=0")  # 2303 steps; a checkpoint every unit of t
STOP = "trainer.max_steps=1000"  # the first part of a run: its last.ckpt is at step 1000


def run_in(out: Path, *overrides: str) -> dict:
    return train(compose_cfg("trainer.enable_progress_bar=false", f"run.output_dir={out}",
                             *overrides))


def losses(out: Path) -> np.ndarray:
    return np.fromfile(out / "losses.f64")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(uninterrupted run dir, its summary, checkpoint of the same run stopped at step 1000)."""
    root = tmp_path_factory.mktemp("runs")
    summary = run_in(root / "whole", *BASE)
    run_in(root / "first", *BASE, STOP)
    return root / "whole", summary, root / "first" / "checkpoints" / "last.ckpt"


def refused(out: Path, *overrides: str) -> str:
    """The one-line message of a resume refused before any work: nothing written but the folder."""
    with pytest.raises(ConfigError) as info:
        run_in(out, *overrides)
    message = str(info.value)
    assert "\n" not in message
    assert not out.exists() or list(out.iterdir()) == []
    return message


def test_resume_with_the_same_settings_continues_bit_for_bit(runs, tmp_path):
    whole, summary, ckpt = runs
    out = tmp_path / "resumed"
    resumed = run_in(out, *BASE, f"ckpt_path={ckpt}")
    assert np.array_equal(np.concatenate([losses(ckpt.parent.parent)[:1000], losses(out)]),
                          losses(whole))
    assert resumed["beta"] == summary["beta"] and resumed["plateaus"] == summary["plateaus"]


@pytest.mark.parametrize("overrides, differing", [
    (["model.alpha=1e-3"], ["model.alpha (1e-05 there, 0.001 here)"]),
    (["optim.lr=0.02", "data.seed=1"], ["optim.lr (0.01 there, 0.02 here)",
                                        "data.seed (0 there, 1 here)"]),
    (["data.n=12"], ["data.n (10 there, 12 here)"]),
    (["optim=sgd"], ["optim.method (gd there, sgd here)", "optim.batch_size (null there, 5 here)"]),
    (["model.dtype=float32"], ["model.dtype (float64 there, float32 here)"]),
    (["model.alpha=[1e-5,1e-6]"], ["model.alpha (1e-05 there, [1e-05, 1e-06] here)"]),
    (["model=symmetric", "model.alpha=1e-5"],
     ["model._target_ (dlnlab.models.UVNetwork there, dlnlab.models.SymmetricNetwork here)"]),
    (["run.seed=1", "run.record_every_t=0.01", "run.log_every_t=0.05", "run.log_loss_rtol=0.1",
      "run.divergence_factor=100"],
     ["run.seed (0 there, 1 here)", "run.record_every_t (0.005 there, 0.01 here)",
      "run.log_every_t (0.02 there, 0.05 here)", "run.log_loss_rtol (0.05 there, 0.1 here)",
      "run.divergence_factor (10000.0 there, 100.0 here)"]),
    (["callbacks.plateaus.window_t=0.1", "callbacks.theory.threshold=0.1"],
     ["callbacks.plateaus.window_t (0.05 there, 0.1 here)",
      "callbacks.theory.threshold (0.01 there, 0.1 here)"]),
    ([], ["callbacks.figures (absent there, here: its findings would start at the checkpoint's "
          "step; drop it with ~callbacks.figures)"]),  # BASE without ~callbacks.figures
])
def test_resume_with_other_settings_is_refused_naming_each_key(runs, tmp_path, overrides,
                                                               differing):
    ckpt = runs[2]
    base = BASE if overrides else [o for o in BASE if o != "~callbacks.figures"]
    message = refused(tmp_path / "resumed", *base, *overrides, f"ckpt_path={ckpt}")
    assert message.startswith(f"ckpt_path={ckpt} was written by a run with other settings: ")
    for item in differing:
        assert item in message
    assert message.count(" there, ") == len(differing)


def test_allowed_changes_resume_bit_for_bit(runs, tmp_path):
    """Block length, threads, checkpoint schedule, profiler, flow size, output folder and run
    length may change; a removed callback's findings are absent, the others' unchanged."""
    whole, summary, ckpt = runs
    out = tmp_path / "resumed"
    resumed = run_in(out, *BASE, f"ckpt_path={ckpt}", "run.steps_per_call=333",
                     "run.num_threads=2", "callbacks.checkpoints.every_t=0.5",
                     "callbacks.checkpoints.every_s=1", "trainer.profiler=simple",
                     "theory.flow_max_d=0", "~callbacks.plateaus", "run.t_max=2")
    assert np.array_equal(np.concatenate([losses(ckpt.parent.parent)[:1000], losses(out)]),
                          losses(whole))
    assert resumed["beta"] == summary["beta"] and "plateaus" not in resumed
    assert resumed["active_events"] == summary["active_events"]


def test_run_t_max_extends_a_run_and_nothing_left_is_refused(runs, tmp_path):
    whole, summary, ckpt = runs
    assert summary["steps"] == 2303
    final = whole / "checkpoints" / "last.ckpt"
    message = refused(tmp_path / "same", *BASE, f"ckpt_path={final}")
    assert "already reached this run's end (step 2303, t = 2)" in message
    assert "pass a larger run.t_max" in message
    message = refused(tmp_path / "shorter", *BASE, "run.t_max=1", f"ckpt_path={final}")
    assert "at step 2303 (t = 2), past this run's end at step 1152 (t = 1.001)" in message
    assert "resume with run.t_max ≥ 2.001 (and trainer.max_steps ≥ 2303, or -1)" in message
    longer = run_in(tmp_path / "longer", *BASE, "run.t_max=3", f"ckpt_path={final}")
    straight = run_in(tmp_path / "straight", *BASE, "run.t_max=3")
    assert longer["steps"] == straight["steps"] == 3454 and longer["beta"] == straight["beta"]


def test_a_replica_run_resumes_only_where_all_its_replicas_ran_together(tmp_path):
    args = (*BASE, "model.alpha=[1e-5,1e-10]")  # 2303 and 4606 steps
    whole = run_in(tmp_path / "whole", *args)
    run_in(tmp_path / "first", *args, STOP)  # both stop at step 1000
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = run_in(tmp_path / "resumed", *args, f"ckpt_path={ckpt}")
    assert [r["beta"] for r in resumed["replicas"]] == [r["beta"] for r in whole["replicas"]]
    assert [r["steps"] for r in resumed["replicas"]] == [2303, 4606]
    final = tmp_path / "whole" / "checkpoints" / "last.ckpt"  # replica 0 ended at 2303 of 4606
    message = refused(tmp_path / "longer", *args, "run.t_max=3", f"ckpt_path={final}")
    assert "its network 0_model.alpha=1e-05 had finished at step 2303 (t = 2), before the " \
           "checkpoint's step 4606" in message and "keep run.t_max=2" in message


def test_a_checkpoint_without_the_runs_configuration_is_refused(runs, tmp_path):
    old = torch.load(runs[2], weights_only=True)
    del old["dlnlab"]["config"], old["dlnlab"]["identity"]
    torch.save(old, tmp_path / "old.ckpt")
    message = refused(tmp_path / "resumed", *BASE, f"ckpt_path={tmp_path / 'old.ckpt'}")
    assert message == (f"ckpt_path={tmp_path / 'old.ckpt'} was written by an older dlnlab that "
                       "did not save the run's configuration in checkpoints: it cannot be checked "
                       "against this run, so it is not resumed: start a new run (without "
                       "ckpt_path)")


def test_a_data_file_is_checked_by_its_content_not_its_name(tmp_path):
    X, y = synthetic(n=10, d=15, k=3, seed=0)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    args = (*BASE[3:], "data=file")
    run_in(tmp_path / "first", *args, f"data.path={tmp_path / 'a.npz'}", STOP)
    ckpt = f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"
    (tmp_path / "a.npz").rename(tmp_path / "moved.npz")  # the same data elsewhere: resumes
    moved = run_in(tmp_path / "moved", *args, f"data.path={tmp_path / 'moved.npz'}", ckpt)
    assert moved["status"] == "completed" and moved["steps"] == 2303
    X[0, 0] += 1e-9  # other data under the checkpoint's own path: refused
    np.savez(tmp_path / "a.npz", X=X, y=y)
    message = refused(tmp_path / "changed", *args, f"data.path={tmp_path / 'a.npz'}", ckpt)
    assert "the data (X and y differ from those the checkpoint's run trained on)" in message


def test_another_engine_resumes_to_rounding_with_a_warning(runs, tmp_path):
    whole, summary, ckpt = runs
    with pytest.warns(resume.ResumeWarning, match="stepped by the fused engine on cpu, this run "
                      "steps by torch on cpu: the same steps to rounding"):
        resumed = run_in(tmp_path / "torch", *BASE, "run.engine=torch", f"ckpt_path={ckpt}")
    np.testing.assert_allclose(resumed["beta"], summary["beta"], rtol=1e-10, atol=1e-14)


def _flip_a_bit(ckpt: Path, out: Path) -> Path:
    """A copy of ckpt with one bit of its first tensor's data flipped (the zip headers intact)."""
    import struct
    import zipfile

    data = bytearray(ckpt.read_bytes())
    info = zipfile.ZipFile(ckpt).getinfo("archive/data/0")
    name, extra = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name + extra + 6] ^= 0x10
    out.write_bytes(data)
    return out


def _lightning_checkpoint_of_another_model(out: Path) -> Path:
    from lightning.pytorch.demos.boring_classes import BoringModel

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(out.parent))
    trainer.fit(BoringModel())
    trainer.save_checkpoint(out)
    return out


def _truncated(ckpt: Path, out: Path) -> Path:
    data = ckpt.read_bytes()
    out.write_bytes(data[:len(data) // 2])
    return out


def _empty(ckpt: Path, out: Path) -> Path:
    out.write_bytes(b"")
    return out


def _random(ckpt: Path, out: Path) -> Path:
    out.write_bytes(np.random.default_rng(0).bytes(20_000))
    return out


def _npz(ckpt: Path, out: Path) -> Path:
    np.savez(out.with_suffix(".npz"), X=np.ones((2, 2)))
    return out.with_suffix(".npz")


def _plain(ckpt: Path, out: Path) -> Path:
    torch.save({"w": torch.ones(3)}, out)
    return out


BAD_FILES = {
    "flipped": (_flip_a_bit, "is damaged: its part archive/data/0 fails its CRC check"),
    "truncated": (_truncated, "is truncated or not a checkpoint (not a complete zip archive"),
    "empty": (_empty, "is empty (0 bytes), not a checkpoint"),
    "random": (_random, "is truncated or not a checkpoint"),
    "npz": (_npz, "is a zip archive of X.npy, not a PyTorch checkpoint"),
    "plain": (_plain, "is a PyTorch file but not a Lightning checkpoint"),
    "lightning": (lambda ckpt, out: _lightning_checkpoint_of_another_model(out),
                  "is a Lightning checkpoint of another model (no dlnlab run state in it)"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_checkpoint_file_is_one_line_before_any_work(runs, tmp_path, kind):
    make, expected = BAD_FILES[kind]
    bad = make(runs[2], tmp_path / "bad.ckpt")
    out = tmp_path / "resumed"
    message = refused(out, *BASE, f"ckpt_path={bad}")
    assert message.startswith(f"ckpt_path={bad} ") and expected in message
    assert not (out / "summary.json").exists()  # no summary of a run that never started


def test_a_damaged_checkpoint_exits_2_with_one_line_and_no_summary(runs, tmp_path):
    bad = _flip_a_bit(runs[2], tmp_path / "bad.ckpt")
    proc = subprocess.run([sys.executable, "-m", "dlnlab.cli", "trainer.enable_progress_bar=false",
                           *BASE, f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"dlnlab-train: error: ckpt_path={bad} is damaged: its part archive/data/0 fails its CRC "
        "check (a bad disk or copy): restore the file, or resume from another checkpoint")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()
