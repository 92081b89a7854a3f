"""The effective α of large-step runs through dlnlab (dlnlab/callbacks/effective.py,
docs/large-steps.md): the identity 2pq = α² Π(1 − x_k²) on dlnlab's own iterates, the step that
leaves that regime, the end point it predicts, and the large_steps experiment.

Everything here is checked against a reconstruction written out in the tests: each step's gradient
recomputed from dlnlab's parameters after that step (runs of one step a block), on the batch that
random reshuffling draws (dlnlab.engines.Sampler: each epoch a torch.randperm from a generator
seeded run.seed, cut into batches in order)."""

import json
import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlnlab.checks import ConfigError
from dlnlab.data import synthetic
from dlnlab.preflight import build, preflight
from tests.conftest import compose_cfg

BARE = ("~callbacks.plateaus", "~callbacks.coordinates", "~callbacks.theory", "~callbacks.figures",
        "~callbacks.checkpoints")


class Capture(pl.Callback):
    """The networks' factors (a, b of the power form) after every block, and the steps."""

    runs: list = []

    def __init__(self):
        self.steps, self.factors = [], []
        Capture.runs.append(self)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        model = pl_module.replicas[0].model
        first, second = model.power_form()[:2]
        self.steps.append(trainer.global_step)
        self.factors.append([getattr(model, n).detach().numpy().copy() for n in (first, second)])


def captured(run, *overrides):
    """A run of one step per block: its summary, and (a, b) after every step, from step 0."""
    Capture.runs.clear()
    summary = run(*overrides, "run.steps_per_call=1", "+callbacks.capture._target_="
                  "tests.test_large_steps.Capture")
    (capture,) = Capture.runs
    assert capture.steps == list(range(1, len(capture.steps) + 1))
    return summary, np.array(capture.factors)  # (steps, 2, d)


def batches(n: int, batch: int | None, seed: int, steps: int) -> list[np.ndarray]:
    """The rows of each step's gradient: all (GD), or random reshuffling (SGD)."""
    if batch is None:
        return [np.arange(n)] * steps
    generator = torch.Generator()
    generator.manual_seed(seed)
    per_epoch, out, order = n // batch, [], None
    for k in range(steps):
        if k % per_epoch == 0:
            order = torch.randperm(n, generator=generator).numpy()
        out.append(order[(k % per_epoch) * batch:(k % per_epoch + 1) * batch])
    return out


def kicks(X, y, initial, factors, lr, c, batch, seed=0) -> np.ndarray:
    """x_k = c·lr·g_k for every step k, g_k the mini-batch gradient at dlnlab's β_k (β_0 from the
    initial factors, β_k from the factors after step k − 1)."""
    states = np.concatenate([initial[None], factors[:-1]])
    out = []
    for (a, b), rows in zip(states, batches(len(y), batch, seed, len(states))):
        beta = a * a - b * b
        out.append(c * lr * X[rows].T @ (X[rows] @ beta - y[rows]) / len(rows))
    return np.array(out)


def initial_factors(cfg) -> np.ndarray:
    network = build(cfg.model, "model", d=preflight(cfg).X.shape[1])  # as train() builds it
    first, second = network.power_form()[:2]
    return np.array([getattr(network, n).detach().numpy() for n in (first, second)]), network


# (a) The identity, on dlnlab's own iterates.

IDENTITY = [
    ("uv", "gd", "fused", ("optim.lr=0.6",)),
    ("uv", "sgd", "torch", ("optim.lr=0.2", "optim.batch_size=5")),
    ("symmetric", "gd", "torch", ("optim.lr=0.3",)),
    ("symmetric", "sgd", "fused", ("optim.lr=0.04", "optim.batch_size=1")),
]


@pytest.mark.parametrize("model,optim,engine,extra", IDENTITY)
def test_two_p_q_is_alpha_squared_times_the_product_of_one_minus_x_squared(
        run, tmp_path, model, optim, engine, extra):
    """α_eff² = 2ab = α_eff(0)² Π_k (1 − x_k²) to rounding after every step, x_k = c·γ·g_k with
    g_k recomputed from dlnlab's β_k (c = 1 for u ⊙ v, 2 for w±), at steps with max|x| up to 0.7;
    and the callback's max|x| and final gain are these."""
    overrides = ("data.seed=0", f"model={model}", "model.alpha=0.1", f"optim={optim}", *extra,
                 f"run.engine={engine}", "trainer.max_steps=300", "run.t_max=1e6", "~logger", *BARE)
    cfg = compose_cfg(*overrides, f"run.output_dir={tmp_path / 'x'}")
    initial, network = initial_factors(cfg)
    summary, factors = captured(run, *overrides)
    X, y = preflight(cfg).X, preflight(cfg).y
    c = network.power_form()[3]
    x = kicks(X, y, initial, factors, cfg.optim.lr, c, cfg.optim.batch_size)
    assert 0.3 < np.abs(x).max() < 1
    start = 2 * initial[0] * initial[1]
    product = np.cumprod(1 - x**2, axis=0)
    np.testing.assert_allclose(2 * factors[:, 0] * factors[:, 1], start * product, rtol=1e-11)
    assert summary["max_gamma_g"] == pytest.approx(np.abs(x).max(), rel=1e-12)
    np.testing.assert_allclose(summary["effective_alpha"]["gain"], np.sqrt(product[-1]),
                               rtol=1e-11)
    assert summary["left_regime"] is None and min(summary["effective_alpha"]["gain"]) < 0.9


# (b) Leaving the regime: exactly the first step with some |x_i| ≥ 1.

LEAVING = [  # (overrides, first step with |x| ≥ 1, found by the tests' own search)
    (("data.features=correlated", "data.rho=0.8", "data.seed=1", "model.alpha=1e-3",
      "optim.lr=1.5"), 25),
    (("data.features=correlated", "data.rho=0.8", "data.seed=1", "model=symmetric",
      "model.alpha=1e-3", "optim.lr=0.75"), 18),
    (("data.seed=0", "optim=sgd", "optim.batch_size=1", "model.alpha=0.1", "optim.lr=0.14"), 8),
]


TRUTH: dict = {}  # overrides -> the factors after each step, from a run of one step a block


@pytest.mark.parametrize("overrides,expected", LEAVING)
@pytest.mark.parametrize("engine,block", [("fused", 7), ("torch", 1000)])
def test_leaving_the_regime_is_reported_at_exactly_its_step(run, tmp_path, overrides, expected,
                                                            engine, block):
    """The event and summary's left_regime name the first step whose update has some
    |x_i| = c·γ·|g_i| ≥ 1: the step after which some a_i or b_i is ≤ 0 for the first time, read
    from runs of one step a block, and the first with max|x| ≥ 1 by the reconstruction; the step
    falls inside a block of the run that reports it. Training goes on past it."""
    common = (*overrides, "trainer.max_steps=120", "run.t_max=1e6")
    cfg = compose_cfg(*common, f"run.output_dir={tmp_path / 'x'}")
    initial, network = initial_factors(cfg)
    if overrides not in TRUTH:  # the same for both engines' runs
        TRUTH[overrides] = captured(run, *overrides, "trainer.max_steps=40", "run.t_max=1e6",
                                    *BARE, "~logger")[1]
    factors = TRUTH[overrides]
    flipped = ((factors <= 0).any(axis=(1, 2)))
    first = int(np.argmax(flipped))  # factors[k]: after step k
    X, y = preflight(cfg).X, preflight(cfg).y
    x = np.abs(kicks(X, y, initial, factors[:first + 1], cfg.optim.lr, network.power_form()[3],
                     cfg.optim.batch_size)).max(axis=1)
    assert flipped.any() and first == expected and (x[:first] < 1).all() and x[first] >= 1
    assert first % block != 0  # inside a block, not at its start

    summary = run(*common, f"run.engine={engine}", f"run.steps_per_call={block}",
                  "~callbacks.figures")
    left = summary["left_regime"]
    assert left["step"] == expected and left["max_gamma_g"] == pytest.approx(x[first], rel=1e-9)
    assert summary["steps"] > expected + 50  # training went on
    out = sorted(tmp_path.glob("run*"))[-1]
    events = EventAccumulator(str(out / "tb" / "run")).Reload()
    (event,) = events.Tensors("events/left_regime/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == expected and f"step {expected}:" in text
    assert summary["end_point"]["errors"]["effective"] is None  # no α_eff prediction past it


# (c) The prediction on converged small-to-moderate-step runs.

PROBLEMS = {  # data overrides, α, and the stable steps (scripts/large_steps.py's stable_step:
    # GD, SGD with batch 1 and 5 for u ⊙ v; GD for w₊² − w₋², u ⊙ v's at √2·α halved)
    "sparse": (("data.n=20", "data.d=40", "data.k=3", "data.seed=0"), 0.1,
               {"gd": 0.913, "sgd1": 0.1307, "sgd5": 0.2977, "symmetric": 0.463}),
    "noisy": (("data.n=10", "data.d=30", "data.k=3", "data.noise=0.5", "data.seed=1"), 0.1,
              {"gd": 0.7425, "sgd1": 0.08965}),
    "noisy8": (("data.n=8", "data.d=24", "data.k=2", "data.noise=0.3", "data.seed=5"), 0.01,
               {"gd": 0.6832, "sgd1": 0.1545}),
}
OPTIM = {"gd": ("optim=gd",), "sgd1": ("optim=sgd", "optim.batch_size=1"),
         "sgd5": ("optim=sgd", "optim.batch_size=5"), "symmetric": ("model=symmetric", "optim=gd")}
FRACTIONS = (0.03, 0.1, 0.2)


@pytest.mark.slow
@pytest.mark.parametrize("name,method", [("sparse", "gd"), ("sparse", "sgd1"), ("sparse", "sgd5"),
                                         ("sparse", "symmetric"), ("noisy", "gd"),
                                         ("noisy", "sgd1"), ("noisy8", "gd"), ("noisy8", "sgd1")])
def test_effective_alpha_predicts_the_end_point_better_than_the_nominal_alpha(run, name, method):
    """Converged runs (gradient flow from the final state moves β by ≤ 0.1 × the nominal
    prediction's error) at 3–20% of the stable step: the α_eff prediction is closer to the run's
    end than the nominal α's by at least 0.4 / max|x| (≥ 10× while max|x| ≤ 0.04; measured here:
    0.75–2.0 / max|x| at max|x| ≤ 0.25, docs/large-steps.md §5)."""
    data, alpha, stable = PROBLEMS[name]
    lrs = ",".join(f"{f * stable[method]:.6g}" for f in FRACTIONS)
    summary = run(*data, f"model.alpha={alpha}", *OPTIM[method], f"optim.lr=[{lrs}]",
                  f"run.t_max={4000 / math.log(1 / alpha):.6g}", *BARE, "~logger")
    for r in summary["replicas"]:
        end = r["end_point"]
        print(f"{name} {method} lr={r['lr']:.4g} max|x|={r['max_gamma_g']:.4f} "
              f"errors={end['errors']} ratio={end['ratio']:.3g} converged={end['converged']}")
        assert r["status"] == "completed" and end["converged"], (r["replica"], end["errors"])
        assert end["ratio"] * r["max_gamma_g"] >= 0.4, (r["replica"], end["ratio"],
                                                        r["max_gamma_g"])


# (d) Other models, bad values, the figure.

def test_other_models_are_skipped_with_one_line(run, capsys):
    summary = run("model=symmetric", "model.depth=3", "model.alpha=0.05", "run.t_max=0.2",
                  "~callbacks.figures", "~logger")
    assert "effective_alpha" not in summary and "end_point" not in summary
    lines = [line for line in capsys.readouterr().err.splitlines() if "EffectiveAlpha" in line]
    assert lines == ["EffectiveAlpha: SymmetricNetwork is not a depth-2 u ⊙ v or w₊² − w₋² "
                     "network: no effective α (skipped)"]


@pytest.mark.parametrize("override,message", [
    ("callbacks.effective_alpha.max_d=-1", "max_d=-1 must be an integer ≥ 0"),
    ("callbacks.effective_alpha.converged_within=0", "converged_within=0.0 must be a number > 0"),
    ("callbacks.effective_alpha.figure=yes", "figure='yes' is unknown"),
])
def test_bad_values_name_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=f"callbacks.effective_alpha.{message}"):
        preflight(compose_cfg(override, f"run.output_dir={tmp_path}"))


def test_a_run_gets_its_end_point_figure_and_table(run, tmp_path):
    summary = run(
        "data.seed=0",
        "model.alpha=0.1",
        "optim.lr=0.3",
        "run.t_max=400",
        "~callbacks.figures",
        "callbacks.effective_alpha.figure=always",
    )
    end = summary["end_point"]
    assert end["converged"] and end["ratio"] > 2
    assert set(end["errors"]) == {"nominal", "effective", "continuation"}
    out = sorted(tmp_path.glob("run*"))[-1]
    assert (out / "figures" / "end_point.png").stat().st_size > 20_000
    events = EventAccumulator(str(out / "tb" / "run"), size_guidance={"scalars": 0}).Reload()
    assert {"effective/gain_min", "effective/gain_median",
            "effective/max_gamma_g"} <= set(events.Tags()["scalars"])
    assert "effective/gain" in events.Tags()["histograms"]
    table = events.Tensors("effective/end_point/text_summary")[-1].tensor_proto.string_val[0]
    assert "α_eff (the prediction)" in table.decode()
    gains = events.Scalars("effective/gain_min")
    assert gains[0].value == pytest.approx(1) and gains[-1].value == pytest.approx(
        summary["effective_alpha"]["min"], rel=1e-6)  # float32 in the event file
    assert json.loads((out / "summary.json").read_text())["end_point"] == end


# (e) The experiment.

@pytest.mark.slow
def test_the_large_steps_experiment_runs_and_draws_its_picture(tmp_path):
    """scripts/large_steps.py --quick: three replica runs, one report with its figure; the
    picture of Even et al. on its problem: SGD with batch 1 recovers β* better as the step grows
    (past the gradient flow), GD worse, and at 10% of the stable step α_eff predicts the end point
    ≥ 5× better than α for every method."""
    from scripts.large_steps import main

    out = main(["--quick", "--out", str(tmp_path / "large")])
    assert (out / "large_steps.png").stat().st_size > 50_000
    result = json.loads((out / "large_steps.json").read_text())
    report = (out / "report.md").read_text()
    assert "![large steps](large_steps.png)" in report
    assert [f"## {m}" in report for m in ("GD", "SGD, batch 1", "SGD, batch 5")] == [True] * 3
    flow = result["flow_recovery"]
    gd, sgd = (result["methods"][m]["runs"] for m in ("GD", "SGD, batch 1"))
    inside = [r["recovery"] for r in gd if r["left_regime"] is None]
    assert len(inside) >= 2 and flow < inside[0] < inside[-1]  # GD: worse with the step
    at_limit = next(r for r in sgd if r["fraction"] == 1.0)  # SGD: better
    assert at_limit["interpolates"] and at_limit["recovery"] < 0.8 * flow
    assert sgd[-1]["residual"] < 1e-3 and sgd[-1]["recovery"] < 0.6 * flow  # 1.5γ_s: converging
    for method in result["methods"].values():
        first = method["runs"][0]
        assert first["fraction"] == 0.1 and first["converged"] and first["ratio"] >= 5


def test_the_stable_step_is_the_flows_largest():
    """scripts/large_steps.py's stable step (at the flow's end point) against docs/large-steps.md
    §5's (the largest sharpness over the flow's path, tests/test_endpoint.py): within 0.5%."""
    from scripts.large_steps import stable_step
    from tests.test_endpoint import stable_step as along_the_flow

    X, y = synthetic(n=20, d=40, k=3, seed=0)
    for batch in (None, 1):
        rows = None if batch is None else [np.array([i]) for i in range(len(y))]
        assert stable_step(X, y, 0.1, batch) == pytest.approx(along_the_flow(X, y, 0.1, rows),
                                                              rel=5e-3)


def test_the_end_point_at_a_tiny_alpha(run):
    """At α = 1e-100, log(p/q) reaches hundreds: the offset's part outside range(Xᵀ) is what the
    solve gets (the whole of it overflowed its first iterate)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        summary = run("model.alpha=1e-100", "optim.lr=0.05", "run.t_max=2", "~callbacks.figures",
                      "~callbacks.theory", "~logger")
    assert all(v is not None for v in summary["end_point"]["errors"].values())
