"""The callbacks on real runs: plateaus against the theory's saddles, TensorBoard contents, the live
server."""

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlnlab.theory import flow, saddle_path
from dlnlab.train import build, train
from tests.conftest import compose_cfg

# A 15 × 30 Gaussian problem whose limit has three well-separated jumps (t = 0.715, 2.281, 3.043)
GAUSSIAN = (
    "data.n=15",
    "data.d=30",
    "data.seed=11",
    "model.alpha=1e-50",
    "optim.lr=1e-2",
    "run.t_max=5",
)


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gaussian")
    summary = train(
        compose_cfg("trainer.enable_progress_bar=false", f"run.output_dir={out}", *GAUSSIAN)
    )
    return out, summary


@pytest.mark.slow
def test_every_saddle_is_reached_once_in_order(gaussian_run):
    _, summary = gaussian_run
    rows = summary["saddles"]
    assert len(rows) == 4
    for row in rows[1:]:
        assert row["support_run"] == row["support_limit"]
        assert (
            abs(row["t_run"] / row["t_flow"] - 1) < 0.05
        )  # the run tracks the exact flow at its α
        # ... and is as far from the α → 0 limit as that flow is (docs/theory.md §5: C / log(1/α))
        assert (
            abs(row["t_run"] - row["t_limit"]) <= 1.5 * abs(row["t_flow"] - row["t_limit"]) + 0.01
        )
        assert abs(row["t_run"] / row["t_limit"] - 1) < 0.03  # every jump, the last (to L = 0) too
    for row in rows[:-1]:  # half-way between jumps the run sits at the saddles' losses
        assert row["loss_run"] == pytest.approx(row["loss_limit"], rel=1e-3)
    assert rows[-1]["loss_run"] < 1e-4  # the last, L = 0, approached exponentially
    starts = [p["start_t"] for p in summary["plateaus"]]
    assert len(starts) == 3 and starts == sorted(starts)
    entered = [i for event in summary["active_events"] for i in event["entering"]]
    assert [i for i in entered if i in (4, 9, 16)] == [
        16,
        9,
        4,
    ]  # others may cross the threshold for a while
    assert summary["active_events"][-1]["active"] == [4, 9, 16]


def series(out, name, **guidance):
    return EventAccumulator(
        str(out / "tb" / name), size_guidance={"scalars": 0, **guidance}
    ).Reload()


@pytest.mark.slow
def test_event_files_hold_run_flow_and_limit_the_table_and_figures(gaussian_run):
    out, summary = gaussian_run
    run = series(out, "run", tensors=0, images=0)
    flow_, limit = series(out, "flow"), series(out, "limit")
    for tags in (run.Tags()["scalars"], flow_.Tags()["scalars"], limit.Tags()["scalars"]):
        assert {"loss", "vs_t/loss"} | {
            f"{q}/{i}" for q in ("beta", "dual", "vs_t/beta") for i in (4, 9, 16)
        } <= set(tags)
    assert {"time/accelerated", "active/count"} <= set(run.Tags()["scalars"])
    assert "theory/saddles/text_summary" in run.Tags()["tensors"]
    table = run.Tensors("theory/saddles/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.count("\n") >= 5 and "| 3 |" in table
    assert {"figures/loss", "figures/coordinates", "figures/dual", "figures/path3d"} <= set(
        run.Tags()["images"]
    )
    assert {f.name for f in (out / "figures").iterdir()} == {
        "loss.png",
        "coordinates.png",
        "dual.png",
        "path3d.png",
    }
    limit_loss = {e.step: e.value for e in limit.Scalars("loss")}
    run_loss = {e.step: e.value for e in run.Scalars("loss")}
    last_jump = summary["saddles"][-1]["t_limit"] * summary["time_scale"] / summary["lr"]
    assert (
        limit_loss.keys() <= run_loss.keys()
    )  # at the same steps, but where the limit's loss is 0
    assert {step for step in run_loss if step < last_jump} <= limit_loss.keys()
    assert limit_loss[0] == pytest.approx(run_loss[0])  # same clock: both start at L(0)


@pytest.mark.slow
def test_overlay_scalars_are_the_theory_at_their_steps(gaussian_run):
    """Every logged limit and flow value is Algorithm 1's and the exact flow's at that step's t,
    computed here independently (TensorBoard stores float32)."""
    out, summary = gaussian_run
    cfg = compose_cfg(*GAUSSIAN)
    X, y = build(cfg.data, "data")
    path, steps_per_t = saddle_path(X, y), summary["time_scale"] / summary["lr"]
    exact = flow(
        X,
        y,
        math.log(summary["alpha"]),
        [summary["t_reached"] + 0.1],
        dense=True,
        rtol=1e-10,
        atol=1e-12,
    )
    limit, flow_ = series(out, "limit"), series(out, "flow")
    limit_loss, flow_beta = limit.Scalars("loss"), flow_.Scalars("beta/4")
    assert len(limit_loss) > 50 and len(flow_beta) == len(limit.Scalars("beta/4")) > 50
    for e in limit_loss:
        assert e.value == pytest.approx(path.loss(e.step / steps_per_t), rel=1e-6)
    for e in flow_beta:
        assert e.value == pytest.approx(exact.at(e.step / steps_per_t)[0][4], rel=1e-4, abs=1e-7)


@pytest.mark.slow
def test_fixture_reports_the_deactivation(tmp_path):
    summary = train(
        compose_cfg(
            "trainer.enable_progress_bar=false",
            f"run.output_dir={tmp_path}",
            "data=fixture",
            "model.alpha=1e-30",
            "run.t_max=20",
        )
    )
    assert any(e["leaving"] == [0] for e in summary["active_events"])
    row = summary["saddles"][2]
    assert row["leaving_limit"] == [0] and row["support_run"] == [2]
    assert [r["support_run"] for r in summary["saddles"]] == [[], [0], [2], [2, 3]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_serves_run_flow_and_limit_as_three_series_of_one_tag(gaussian_run):
    """The real server (loopback, a free port): the `loss` chart has run, flow and limit as three
    runs, at the same steps (the flow's down to its rounding floor)."""
    out, _ = gaussian_run
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(out / "tb"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                runs = get(f"{base}/data/runs")
                if len(runs) == 3:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "tensorboard did not come up"
            time.sleep(0.5)
        assert sorted(runs) == ["flow", "limit", "run"]
        loss = {}
        for name in runs:
            query = urllib.parse.urlencode({"run": name, "tag": "loss"})
            loss[name] = {
                step: value for _, step, value in get(f"{base}/data/plugin/scalars/scalars?{query}")
            }
        assert all(len(points) > 20 for points in loss.values())
        assert (
            loss["limit"].keys() <= loss["run"].keys() and loss["flow"].keys() <= loss["run"].keys()
        )
        assert (
            len(loss["limit"]) > 20 and len(loss["flow"]) > 20
        )  # (the limit's ends where its loss is 0)
        assert loss["limit"][0] == loss["flow"][0] == loss["run"][0]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_history_is_what_tensorboard_holds_and_survives_the_checkpoint(tmp_path):
    """The run's history (the figures are drawn from it, late coordinates back-filled from it) loads
    back from the checkpoint with weights_only=True and holds, at every logged record, the β written
    to TensorBoard."""
    train(
        compose_cfg(
            "trainer.enable_progress_bar=false",
            f"run.output_dir={tmp_path}",
            "data=fixture",
            "model.alpha=1e-30",
            "run.t_max=20",
            "run.steps_per_call=5000",
            "~callbacks.figures",
        )
    )
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["dlnlab"][
        "histories"
    ][0]
    assert len(state["step"]) > 5  # several blocks
    steps = torch.cat(state["step"]).numpy()
    betas = torch.cat(state["beta"]).numpy()
    events = series(tmp_path, "run")
    assert {"beta/0", "beta/2", "beta/3"} <= set(
        events.Tags()["scalars"]
    )  # the limit's coordinates
    for i in (0, 2, 3):
        logged = {e.step: e.value for e in events.Scalars(f"beta/{i}")}
        assert len(logged) > 20 and sorted(logged) == sorted(steps.tolist())
        assert all(
            logged[step] == pytest.approx(beta, rel=1e-6, abs=1e-30)
            for step, beta in zip(steps, betas[:, i])
        )


@pytest.mark.parametrize(
    "experiment", [("data=fixture", "model.alpha=1e-30", "run.t_max=20"), ("experiment=sgd",)]
)
def test_plateaus_do_not_depend_on_the_block_length(run, experiment):
    """Each plateau's level, β and jump come from the records it keeps, thinned by step (not by
    block), and from the last window's records when it is found a window late: the same for blocks
    of 137 steps (less than a window) and of 100,000."""
    short, long = (run(*experiment, "~callbacks.figures", f"run.steps_per_call={k}")["plateaus"]
                   for k in (137, 100_000))
    assert len(short) >= 3 and short == long


def test_a_positive_network_is_held_against_the_non_negative_limit(run):
    """model=positive (β = w², every coordinate ≥ 0) on the worked example: its limit is the
    non-negative saddle path (docs/nonnegative.md: jumps at t = 2 and 8, saddles (0.8, 0, 0, 0) →
    (0, 0, 1.4, 0), then ∇L ≥ 0 and it stops), and the overlay compares the run with that one, not
    the signed
    path."""
    summary = run(
        "model=positive", "data=fixture", "model.alpha=1e-30", "run.t_max=12", "~callbacks.figures"
    )
    rows = summary["saddles"]
    assert [r["t_limit"] for r in rows] == pytest.approx([0, 2, 8])
    assert [r["support_limit"] for r in rows] == [[], [0], [2]] == [r["support_run"] for r in rows]
    for row in rows[1:]:
        assert (
            abs(row["t_run"] / row["t_limit"] - 1) < 0.03
            and abs(row["t_run"] / row["t_flow"] - 1) < 0.01
        )
    assert min(summary["beta"]) >= 0 and summary["beta"][2] == pytest.approx(1.4, rel=1e-3)


def test_charts_against_accelerated_time_line_up_runs_of_different_alpha(tmp_path):
    """Replicas at α = 1e-10 and 1e-30 take 2,303 and 6,908 steps per unit of t: on the step axis
    their jumps lie apart, on the vs_t/ charts (step = 1000·t) their limits are one curve and each
    run jumps where the limit does (within docs/theory.md §5's C/log(1/α))."""
    train(
        compose_cfg(
            "trainer.enable_progress_bar=false",
            f"run.output_dir={tmp_path}",
            "experiment=fig1",
            "run.t_max=3.5",
            "model.alpha=[1e-10,1e-30]",
            "~callbacks.figures",
        )
    )
    runs = {}
    for name in ("0_model.alpha=1e-10", "1_model.alpha=1e-30"):
        folder = tmp_path / "replicas" / name
        runs[name] = {s: {key: {e.step: e.value for e in series(folder, s).Scalars(key)}
                          for key in ("loss", "vs_t/loss")} for s in ("run", "limit")}
    low, high = runs.values()
    common = low["limit"]["vs_t/loss"].keys() & high["limit"]["vs_t/loss"].keys()
    assert len(common) > 20 and all(
        low["limit"]["vs_t/loss"][s] == high["limit"]["vs_t/loss"][s] for s in common
    )
    level = (
        0.7301674963696196 + 0.18144474812810216
    ) / 2  # half-way down the first jump (t = 0.7153)

    def first_below(points):
        return min(step for step, value in points.items() if value <= level)
    at_t = [first_below(r["run"]["vs_t/loss"]) for r in (low, high)]
    at_step = [first_below(r["run"]["loss"]) for r in (low, high)]
    assert all(abs(t / 715.3 - 1) < 0.03 for t in at_t)
    assert at_step[1] / at_step[0] == pytest.approx(math.log(1e30) / math.log(1e10), rel=0.03)
