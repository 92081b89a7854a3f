"""The fused CPU engine (dlnlab/kernel.py) against an independent numpy step and against the tensor
path."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dlnlab import kernel
from dlnlab.checks import ConfigError
from dlnlab.preflight import preflight
from dlnlab.train import make_task
from tests.conftest import compose_cfg
from tests.test_replicas import LOSSES, assert_same, run_in


@pytest.mark.parametrize("depth, c", [(2, 1.0), (2, 2.0), (3, 3.0)])
def test_one_step_is_gd_on_a_power_form(depth, c):
    """A stack of two rows: the first takes one GD step (against numpy), the second is told to take
    none."""
    rng = np.random.default_rng(depth)
    X, y = rng.standard_normal((7, 5)), rng.standard_normal(7)
    a, b = rng.uniform(0.1, 1, (2, 5)), rng.uniform(0.1, 1, (2, 5))
    before_a, before_b = a.copy(), b.copy()
    r = X @ (a[0] ** depth - b[0] ** depth) - y
    h = 0.01 * X.T @ r / 7
    losses, rec, counts = np.empty((1, 2)), np.empty((2, 1, 5)), np.zeros(2, np.int64)
    kernel.power_steps(
        kernel.Problem(X, y),
        kernel.Networks(a, b, depth, c, np.array([0.01 / 7] * 2), np.array([1, 0])),
        kernel.Batches(np.arange(7)[None], 7, 0, False),
        kernel.Records(0, np.array([1, 1]), losses, rec.copy(), rec, rec.copy(), counts),
    )
    assert list(counts) == [1, 0] and losses[0, 0] == pytest.approx(r @ r / 14, rel=1e-14)
    np.testing.assert_allclose(a[0], before_a[0] - c * h * before_a[0] ** (depth - 1), rtol=1e-14)
    np.testing.assert_allclose(b[0], before_b[0] + c * h * before_b[0] ** (depth - 1), rtol=1e-14)
    assert np.array_equal(a[1], before_a[1]) and np.array_equal(b[1], before_b[1])


@pytest.mark.parametrize("overrides", [
    ["experiment=fig1", "run.t_max=3.5"],
    ["experiment=sgd", "run.t_max=2"],
    ["model=symmetric", "model.alpha=1e-20", "model.shape=random", "run.t_max=8", "data=fixture"],
    ["experiment=depth3", "run.t_max=3"],
])
def test_fused_engine_is_the_tensor_path_to_rounding(tmp_path, overrides):
    """Same losses at every step, β, plateaus, saddles and events: the two engines only sum in other
    orders."""
    common = (*overrides, "~callbacks.figures", LOSSES, "run.steps_per_call=10000")  # same blocks
    fused = run_in(tmp_path / "fused", *common, "run.engine=fused")
    tensor = run_in(tmp_path / "torch", *common, "run.engine=torch")
    assert_same(fused, tensor)
    np.testing.assert_allclose(
        np.fromfile(tmp_path / "fused" / "losses.f64"),
        np.fromfile(tmp_path / "torch" / "losses.f64"),
        rtol=1e-9,
    )


def task_for(*overrides, model=None):
    cfg = compose_cfg("run.output_dir=unused", *overrides)
    if model is not None:
        cfg.model = OmegaConf.create(model)
    return make_task(cfg, preflight(cfg))


def fused(task) -> bool:
    return task.engine.name == "fused"


USER_MODEL = {"_target_": "tests.test_models.AutogradUV", "alpha": 1e-2}  # given by beta() alone


def test_auto_engine_is_fused_for_small_cpu_problems_with_a_power_form():
    assert fused(task_for("trainer.accelerator=cpu"))
    assert fused(
        task_for("trainer.accelerator=cpu", "model=symmetric", "model.depth=3", "model.alpha=0.1")
    )
    assert not fused(
        task_for("trainer.accelerator=cpu", "data.n=1000", "data.d=1000")
    )  # BLAS on all cores there
    assert not fused(task_for("trainer.accelerator=cpu", "run.engine=torch"))
    assert not fused(task_for("trainer.accelerator=cpu", model=USER_MODEL))


@pytest.mark.parametrize(
    "overrides, model, message",
    [
        (["run.engine=fast"], None, "run.engine='fast' is unknown"),
        (
            ["run.engine=fused", "trainer.accelerator=gpu"],
            None,
            "run.engine=fused needs the CPU"
            if torch.cuda.is_available()
            else "trainer.accelerator=gpu but this machine has no",
        ),
        (["run.engine=fused", "trainer.accelerator=cpu"], USER_MODEL, "AutogradUV has none"),
    ],
)
def test_engine_errors(overrides, model, message):
    with pytest.raises(ConfigError, match=message):
        task_for(*overrides, model=model)
