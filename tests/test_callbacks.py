"""Every callback stands alone: each reads only the task's block record, never another callback."""

import inspect
from dataclasses import MISSING, fields

import numpy as np
import pytest
from hydra.utils import get_class as locate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlnlab.callbacks.base import Milestones
from dlnlab.config import CALLBACKS

ALONE = {  # what each callback, alone, must still produce
    "theory": lambda s, out: (
        s["saddles"]
        and tags(out, "limit") >= {"loss", "beta/0", "vs_t/beta/2"}
        and tags(out, "flow") >= {"loss", "beta/2"}
    ),
    "figures": lambda s, out: (
        {p.name for p in (out / "figures").iterdir()}
        == {"loss.png", "coordinates.png", "dual.png", "path3d.png"}
    ),
    "plateaus": lambda s, out: len(s["plateaus"]) >= 3 and s["plateaus"][1]["support"] == [0],
    "coordinates": lambda s, out: (
        [e["entering"] for e in s["active_events"]][:2] == [[0], [2]]
        and tags(out, "run") >= {"beta/0", "dual/0", "beta/2", "active/count"}
    ),
}


def tags(out, series: str) -> set[str]:
    return set(EventAccumulator(str(out / "tb" / series)).Reload().Tags()["scalars"])


@pytest.mark.parametrize("kept", ALONE)
def test_each_callback_works_with_the_others_removed(run, tmp_path, kept):
    removed = [f"~callbacks.{name}" for name in ("theory", "figures", "plateaus", "coordinates",
                                                  "loss_logger") if name != kept]
    summary = run("data=fixture", "model.alpha=1e-30", "run.t_max=12", *removed)
    (out,) = tmp_path.glob("run*")
    assert ALONE[kept](summary, out)


def test_every_callback_has_a_schema_and_its_defaults_in_one_place():
    """conf/callbacks/default.yaml holds every default (the schemas none, the constructors none)."""
    for schema in CALLBACKS.values():
        names = [f.name for f in fields(schema) if f.name != "_target_"]
        assert all(
            getattr(schema, "__dataclass_fields__")[n].default in (MISSING, "???") for n in names
        )
        target = locate(schema._target_)
        parameters = inspect.signature(target).parameters
        assert set(parameters) == set(names), schema.__name__  # the schema is the constructor's
        assert all(p.default is inspect.Parameter.empty for p in parameters.values()), (
            schema.__name__
        )


@pytest.mark.parametrize("overrides", [
    ("callbacks.coordinates.max_coords=0", "callbacks.theory.max_coords=0",
     "callbacks.figures.max_coords=0"),
    ("data.k=0", "data.noise=0.1"),  # y is noise alone: the limit is the noise's fit
    ("data.k=0", "data.noise=0.1", "model.alpha=[1e-5,1e-10]"),
])
def test_legal_corner_cases_end_with_their_checkpoint_summary_and_no_traceback(
        run, tmp_path, overrides):
    """Whatever the end-of-run figures make of them, the final checkpoint and summary.json come
    first."""
    summary = run("run.t_max=2", *overrides)
    (out,) = tmp_path.glob("run*")
    assert summary["status"] == "completed" and (out / "summary.json").exists()
    assert (out / "checkpoints" / "last.ckpt").exists()


def test_a_diverging_deep_run_keeps_what_it_wrote_and_says_why(run, tmp_path):
    """Depth 50 with a step far too large: the loss overflows; the run says it diverged (with a
    step to try), keeps its last good checkpoint and its summary, and draws what it can."""
    summary = run("model=symmetric", "model.depth=50", "model.alpha=0.7", "optim.lr=50",
                  "run.t_max=3")
    (out,) = tmp_path.glob("run*")
    assert summary["status"] == "diverged" and "try optim.lr=" in summary["message"]
    assert (out / "summary.json").exists() and (out / "checkpoints" / "last.ckpt").exists()


def test_milestones_are_due_where_the_definition_says_in_any_blocks():
    """Milestones.due (a binary search per milestone) against the definition evaluated at every
    record: the first record past each multiple of every_t up to 10·every_t, then past each 10% of
    t, skipping records that are not usable; fed in random blocks."""
    rng = np.random.default_rng(3)
    for every in (0.1, 1.0, 0.37):
        t = np.cumsum(rng.exponential(every / 7, 3000))
        usable = rng.random(len(t)) > 0.2
        knee = 10 * every
        index = np.floor(np.where(t < knee, t / every,
                                  10 + np.log(np.maximum(t, knee) / knee) / np.log(1.1)))
        expected, count = [], 0
        for j in range(len(t)):
            if index[j] >= count and usable[j]:
                expected.append(j)
                count = int(index[j]) + 1
        milestones, got, at = Milestones(every), [], 0
        for size in rng.integers(1, 400, 100):
            block = slice(at, min(at + size, len(t)))
            got += [block.start + j for j in milestones.due(t[block],
                                                            lambda j: usable[block.start + j])]
            at = block.stop
        assert got == expected and milestones.count == count and len(expected) > 20
