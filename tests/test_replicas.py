"""Replicas: a list of α (seeds, step sizes) trains as one stacked run, and each replica is exactly
the run it replaces: same losses, β, plateaus, saddles, events, up to the order of floating-point
sums."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlnlab.checks import ConfigError
from dlnlab.models import DiagonalNetwork, SymmetricNetwork, UVNetwork
from dlnlab.stack import Stack
from dlnlab.train import train
from tests.conftest import compose_cfg

LOSSES = "+callbacks.losses._target_=dlnlab.callbacks.LossFile"
FIG1 = ("experiment=fig1", "run.t_max=2.5", "~callbacks.figures", LOSSES)
IGNORED = {"wall_time_s", "config", "replica"}


def run_in(out: Path, *overrides: str) -> dict:
    return train(
        compose_cfg("trainer.enable_progress_bar=false", f"run.output_dir={out}", *overrides)
    )


def assert_same(a, b, where="summary"):
    """Equal structure; equal ints, strings and None; floats equal to 1e-9 relative (summation
    order), or both within 1e-15 of zero, the rounding floor of O(1) quantities (a loss of 1e-31 is
    rounding noise; the dual s, O(1), still pins down the coordinates that are off)."""
    if isinstance(a, dict):
        assert a.keys() - IGNORED == b.keys() - IGNORED, where
        for key in a.keys() - IGNORED:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_replicas_are_runs(
    tmp_path, replica_overrides: list[str], single_overrides: list[list[str]], *common
):
    replicated = run_in(tmp_path / "replicas", *common, *replica_overrides)
    assert replicated["status"] == "completed" and len(replicated["replicas"]) == len(
        single_overrides
    )
    for i, (entry, overrides) in enumerate(zip(replicated["replicas"], single_overrides)):
        single = run_in(tmp_path / f"single{i}", *common, *overrides)
        assert_same(entry, single, entry["replica"])
        stacked = tmp_path / "replicas" / "replicas" / entry["replica"] / "losses.f64"
        np.testing.assert_allclose(
            np.fromfile(stacked), np.fromfile(tmp_path / f"single{i}" / "losses.f64"), rtol=1e-10
        )
    return replicated


ENGINES = pytest.mark.parametrize(
    "engine", ["auto", "torch"]
)  # small problems: the fused loop, or mat-mats


@ENGINES
def test_three_alpha_replicas_are_three_runs(tmp_path, engine):
    alphas = ["1e-05", "1e-20", "1e-50"]
    summary = assert_replicas_are_runs(
        tmp_path,
        [f"model.alpha=[{','.join(alphas)}]"],
        [[f"model.alpha={a}"] for a in alphas],
        *FIG1,
        f"run.engine={engine}",
    )
    entries = summary["replicas"]
    assert [e["replica"] for e in entries] == [f"{i}_model.alpha={a}" for i, a in enumerate(alphas)]
    assert [e["steps"] for e in entries] == [
        math.ceil(2.5 * math.log(1 / float(a)) / 1e-2) for a in alphas
    ]
    assert summary["steps"] == entries[-1]["steps"]  # the run lasts as long as its longest replica
    deepest = entries[-1]  # at α = 1e-50 the run is at the limit's first saddles, with its supports
    assert [r["support_run"] for r in deepest["saddles"][:3]] == [
        r["support_limit"] for r in deepest["saddles"][:3]
    ]


def test_step_size_and_seed_replicas_are_their_runs(tmp_path):
    """Two lists give their product; per-replica step sizes scale each row of the gradient."""
    common = ("data=fixture", "model.alpha=1e-20", "run.t_max=9", "model.shape=random",
              LOSSES)
    summary = assert_replicas_are_runs(
        tmp_path,
        ["optim.lr=[0.02,0.005]", "model.shape_seed=[3,4]"],
        [
            [f"optim.lr={lr}", f"model.shape_seed={seed}"]
            for seed in (3, 4)
            for lr in ("0.02", "0.005")
        ],
        *common,
    )
    assert (
        summary["replicas"][1]["replica"] == "1_model.shape_seed=3,optim.lr=0.005"
    )  # in the order of REPLICABLE


@ENGINES
def test_sgd_replicas_share_the_batches_of_their_runs(tmp_path, engine):
    assert_replicas_are_runs(
        tmp_path,
        ["model.alpha=[1e-10,1e-30]"],
        [["model.alpha=1e-10"], ["model.alpha=1e-30"]],
        "experiment=sgd",
        "run.t_max=1.5",
        "~callbacks.figures",
        LOSSES,
        f"run.engine={engine}",
    )


@ENGINES
def test_diverging_replicas_stop_alone_and_the_others_are_their_runs(tmp_path, engine):
    """(α = 1e-100, lr = 2) diverges while it has the second most steps to go: its row leaves the
    stack, the rows behind it move up, and the replicas that go on are still exactly their separate
    runs."""
    common = ("run.t_max=10", "run.steps_per_call=50", "~callbacks.figures", f"run.engine={engine}")
    summary = run_in(tmp_path / "run", *common, "model.alpha=[1e-100,1e-3]", "optim.lr=[0.2,2]")
    entries = {e["replica"]: e for e in summary["replicas"]}
    assert [e["status"] for e in entries.values()] == [
        "completed",
        "diverged",
        "completed",
        "diverged",
    ]
    bad = entries["1_model.alpha=1e-100,optim.lr=2"]
    assert (
        f"diverged at step {bad['steps']} " in bad["message"] and bad["steps"] < 1151
    )  # its steps: up to then
    assert summary["status"] == "diverged" and summary["message"].startswith(
        "2 of 4 replicas diverged: 1_model.alpha=1e-100"
    )
    for name, alpha in (
        ("0_model.alpha=1e-100,optim.lr=0.2", "1e-100"),
        ("2_model.alpha=0.001,optim.lr=0.2", "1e-3"),
    ):
        assert_same(
            entries[name],
            run_in(tmp_path / f"single{alpha}", *common, f"model.alpha={alpha}", "optim.lr=0.2"),
            name,
        )
    json.loads((tmp_path / "run" / "summary.json").read_text())  # valid JSON (non-finite β → null)


class StopRun(Callback):
    """Asks the run to stop, as the signal handler does, once a replica has passed a step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.lightning_module.stop_requested = True


def test_an_interrupted_replica_run_resumes_bit_for_bit(tmp_path):
    """SGD replicas: the shared batch sampler, the stack's row order and each replica's callbacks
    travel in the checkpoint."""
    sgd = (
        "optim=sgd",
        "optim.batch_size=3",
        "data.n=10",
        "data.d=15",
        "model.alpha=[1e-5,1e-10]",
        "run.t_max=3",
        LOSSES,
        "run.steps_per_call=100",
        "~callbacks.figures",
    )
    reference = run_in(tmp_path / "reference", *sgd)
    stopped = run_in(
        tmp_path / "first",
        *sgd,
        "+callbacks.stop._target_=tests.test_replicas.StopRun",
        "+callbacks.stop.step=1234",
    )
    assert (
        stopped["status"] == "interrupted" and stopped["steps"] == 1400
    )  # at the end of the next block
    assert [e["status"] for e in stopped["replicas"]] == ["interrupted", "interrupted"]
    resumed = run_in(
        tmp_path / "resumed", *sgd, f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"
    )
    for whole, entry in zip(reference["replicas"], resumed["replicas"]):
        name = entry["replica"]
        for key in ("status", "steps", "beta", "plateaus", "saddles", "active_events"):
            assert entry[key] == whole[key], (name, key)
        parts = [
            np.fromfile(tmp_path / run / "replicas" / name / "losses.f64")
            for run in ("first", "resumed")
        ]
        assert np.array_equal(
            np.concatenate(parts),
            np.fromfile(tmp_path / "reference" / "replicas" / name / "losses.f64"),
        )


def test_each_replica_has_its_own_tensorboard_run(tmp_path):
    run_in(
        tmp_path,
        "experiment=fig1",
        "run.t_max=1",
        "~callbacks.figures",
        "model.alpha=[1e-10,1e-30]",
    )
    for name in ("0_model.alpha=1e-10", "1_model.alpha=1e-30"):
        tb = tmp_path / "replicas" / name / "tb"
        assert all(
            len(list((tb / s).glob("events.out.tfevents.*"))) == 1 for s in ("run", "flow", "limit")
        )
        run, flow, limit = (
            EventAccumulator(str(tb / s)).Reload().Tags() for s in ("run", "flow", "limit")
        )
        assert {"loss", "beta/4", "vs_t/loss"} <= set(run["scalars"]) & set(limit["scalars"]) & set(
            flow["scalars"]
        )
        assert "theory/saddles/text_summary" in run["tensors"]
    assert not (tmp_path / "tb").exists()  # no empty run-level TensorBoard run
    assert "| replicas/1_model.alpha=1e-30 | 1e-30 |" in (tmp_path / "aggregate.md").read_text()


@pytest.mark.parametrize("overrides, message", [
    (["model.alpha=[]"], "model.alpha=[] is empty"),
    (["model.alpha=[1e-5,abc]"], "model.alpha="),
    (["model.alpha=[1e-5,2.0]"], "alpha=2.0 must be a number in (0, 1)"),
    (["optim.lr=[0.01,-1]"], "optim.lr=-1 must be a positive step size"),
    (["model.shape_seed=[1,2.5]"], "model.shape_seed="),
])
def test_bad_replica_values_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        run_in(tmp_path, "data=fixture", *overrides)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


class MixingNetwork(DiagonalNetwork):
    """β = A θ with a fixed matrix A: not elementwise, so its replicas run through torch.func."""

    def __init__(self, d: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "A",
            torch.eye(d, dtype=torch.float64)
            + 0.1 * torch.rand(d, d, generator=generator, dtype=torch.float64),
        )
        self.theta = torch.nn.Parameter(torch.ones(d, dtype=torch.float64))

    def beta(self):
        return self.A @ self.theta


class ScaledNetwork(DiagonalNetwork):
    """β = scale·θ with a plain attribute `scale`: replicas with other scales cannot share one
    step."""

    def __init__(self, d: int, scale: float):
        super().__init__()
        self.scale = scale
        self.theta = torch.nn.Parameter(torch.ones(d, dtype=torch.float64))

    def beta(self):
        return self.scale * self.theta


def step_both(make, E=3, d=5):
    """A stack of E models and the same models alone, after two GD steps with the same h."""
    models, singles = [make(e) for e in range(E)], [make(e) for e in range(E)]
    stack = Stack(models)
    values = stack.stacked()
    beta_of, descend = stack.operations(values)
    h = torch.linspace(-1e-2, 1e-2, E * d, dtype=torch.float64).reshape(E, d)
    with torch.no_grad():
        for _ in range(2):
            descend(h)
            for e, single in enumerate(singles):
                single.descend(h[e])
    return stack, beta_of(), torch.stack([m.beta() for m in singles])


@pytest.mark.parametrize(
    "make",
    [
        lambda e: UVNetwork(5, 10.0 ** -(e + 2), shape="random", shape_seed=e),
        lambda e: SymmetricNetwork(5, 10.0 ** -(e + 2), depth=3),
    ],
)
def test_stacked_models_step_as_their_replicas(make):
    stack, stacked, singles = step_both(make)
    assert stack.rowwise
    torch.testing.assert_close(stacked, singles, rtol=1e-15, atol=0)


def test_a_model_that_is_not_rowwise_steps_as_its_replicas_through_torch_func():
    stack, stacked, singles = step_both(lambda e: MixingNetwork(5, seed=e))
    assert not stack.rowwise
    torch.testing.assert_close(stacked, singles, rtol=1e-13, atol=1e-15)


def test_replicas_that_differ_in_an_attribute_their_step_reads_are_refused():
    with pytest.raises(ConfigError, match="ScaledNetwork cannot run as replicas"):
        Stack([ScaledNetwork(4, 1.0), ScaledNetwork(4, 2.0)])
    assert Stack([ScaledNetwork(4, 2.0)]).models  # alone, any model runs


@pytest.mark.slow
def test_alpha_sweep_as_replicas_matches_the_multirun_table(tmp_path):
    """The experiments issue's α-sweep, once as a multirun and once as one replica run: same
    table."""
    script = Path(sys.executable).parent / "dlnlab-train"
    common = [
        "trainer.enable_progress_bar=false",
        "experiment=fig1",
        "run.t_max=3.5",
        "optim.lr=5e-3",
        "~callbacks.figures",
    ]
    alphas = ["1e-5", "1e-20", "1e-100"]
    for args in (
        [
            "-m",
            *common,
            f"model.alpha={','.join(alphas)}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        [*common, f"model.alpha=[{','.join(alphas)}]", f"hydra.run.dir={tmp_path / 'replicas'}"],
    ):
        proc = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    from dlnlab.aggregate import collect

    multirun, replicas = collect(tmp_path / "multirun"), collect(tmp_path / "replicas")
    assert [r["alpha"] for r in replicas] == [1e-100, 1e-20, 1e-5] and replicas[0]["reached"] == 3
    for a, b in zip(multirun, replicas):
        assert_same(
            {k: v for k, v in a.items() if k != "job"}, {k: v for k, v in b.items() if k != "job"}
        )
