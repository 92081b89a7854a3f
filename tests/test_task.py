"""The training task: step counting, GD = SGD at batch n, autograd models, the loss record,
divergence."""

import gc
import math

import numpy as np
import pytest
from lightning.pytorch import Callback
from omegaconf import OmegaConf

from dlnlab.data import synthetic
from dlnlab.train import train
from tests.conftest import compose_cfg


def test_run_reaches_t_max_in_the_computed_number_of_steps(run):
    s = run("model.alpha=1e-6", "run.t_max=0.5", "optim.lr=0.01", "run.steps_per_call=77")
    assert s["status"] == "completed"
    assert s["steps"] == math.ceil(0.5 * math.log(1e6) / 0.01)
    assert s["t_reached"] == pytest.approx(0.5, abs=0.01 / math.log(1e6))


def test_trainer_max_steps_caps_the_run(run):
    s = run("trainer.max_steps=123")
    assert s["steps"] == 123 and s["status"] == "completed"


class FreezeCount(Callback):
    """How many objects the garbage collector had frozen during the fit."""

    during: int = 0

    def on_train_batch_end(self, *args):
        FreezeCount.during = gc.get_freeze_count()


def test_the_heap_is_frozen_for_the_fit_and_given_back(run):
    """Objects made before the fit stay out of the collector's passes during it (frozen), and only
    then."""
    before = gc.get_freeze_count()
    s = run("trainer.max_steps=10", "+callbacks.freeze._target_=tests.test_task.FreezeCount")
    assert s["status"] == "completed"
    assert FreezeCount.during > 100_000 and gc.get_freeze_count() == before


def test_profiler_times_every_callback_hook_inside_the_run(run, tmp_path):
    """trainer.profiler=simple: each hook's total time in summary.json (most first, within the run's
    time) and Lightning's report beside it."""
    s = run("trainer.max_steps=3000", "run.steps_per_call=1000", "trainer.profiler=simple")
    profile = s["profile_s"]
    assert {"[Callback]LossLogger.on_train_batch_end", "[Callback]TheoryOverlay.setup",
            "[Strategy]SingleDeviceStrategy.training_step"} <= profile.keys()
    assert list(profile.values()) == sorted(profile.values(), reverse=True)
    assert (
        0
        < sum(t for hook, t in profile.items() if hook.startswith("[Callback]"))
        < s["wall_time_s"]
    )
    assert "Profiler Report" in next(tmp_path.glob("run*/fit-profile.txt")).read_text()


class LossRecord(Callback):
    """Collects the block records' losses, as every callback reads them."""

    blocks: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        (row,) = outputs["record"].rows
        assert row.first_step + len(row.losses) == trainer.global_step == row.end_step
        LossRecord.blocks.append(row.losses.copy())


def test_gd_matches_a_hand_written_loop_and_records_every_loss(run):
    """The task's loss record is L(beta_k) at every step k, and its beta is plain GD's."""
    LossRecord.blocks = []
    s = run(
        "trainer.max_steps=500",
        "run.t_max=1000",
        "run.steps_per_call=64",
        "~logger",
        "callbacks=none",
        "+callbacks.record._target_=tests.test_task.LossRecord",
        "data.n=8",
        "data.d=5",
        "data.seed=0",
        "model.alpha=0.3",
        "optim.lr=0.05",
    )
    record = np.concatenate(LossRecord.blocks)
    X, y = synthetic(n=8, d=5, k=3, seed=0)
    u, v = np.full(5, math.sqrt(2) * 0.3), np.zeros(5)
    expected = []
    for _ in range(500):
        r = X @ (u * v) - y
        expected.append(r @ r / 16)
        g = X.T @ r / 8
        u, v = u - 0.05 * g * v, v - 0.05 * g * u
    np.testing.assert_allclose(record, expected, rtol=1e-12)
    np.testing.assert_allclose(s["beta"], u * v, rtol=1e-12)


def test_sgd_with_batch_n_is_gd(run):
    """Each SGD batch of size n is a permutation of all samples: the same gradient, summed in
    another order."""
    gd = run("data.n=12", "trainer.max_steps=2000", "model.alpha=1e-3")
    sgd = run(
        "data.n=12",
        "trainer.max_steps=2000",
        "model.alpha=1e-3",
        "optim=sgd",
        "optim.batch_size=12",
    )
    np.testing.assert_allclose(sgd["beta"], gd["beta"], rtol=1e-10, atol=1e-14)


def test_sgd_is_reproducible_by_seed(run):
    args = (
        "data.n=12",
        "trainer.max_steps=3000",
        "optim=sgd",
        "optim.batch_size=3",
        "model.alpha=1e-3",
    )
    a, b, c = run(*args), run(*args), run(*args, "run.seed=1")
    assert a["beta"] == b["beta"]
    assert a["beta"] != c["beta"]


def test_user_model_trains_through_autograd_like_the_closed_form(tmp_path):
    """A model given only beta() trains through autograd, step for step like the closed-form
    gradient."""
    args = (
        "trainer.enable_progress_bar=false",
        "trainer.max_steps=1500",
        "run.t_max=1000",
        "~logger",
    )
    closed = train(compose_cfg(*args, f"run.output_dir={tmp_path / 'closed'}", "model.alpha=1e-2"))
    cfg = compose_cfg(*args, f"run.output_dir={tmp_path / 'auto'}")
    cfg.model = OmegaConf.create({"_target_": "tests.test_models.AutogradUV", "alpha": 1e-2})
    auto = train(cfg)
    np.testing.assert_allclose(auto["beta"], closed["beta"], rtol=1e-12)


def test_diverging_step_size_stops_with_status_diverged(run):
    s = run("optim.lr=2", "model.alpha=0.5", "run.t_max=1e4", "run.steps_per_call=100")
    assert s["status"] == "diverged"
    assert s["steps"] < 1e4 * math.log(2) / 2
