"""A user's own model, as README's "Extend to deeper models" writes it: its code blocks are read
from the README and run here, in a directory outside the checkout, against the contract of
dlnlab/models/base.py."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlnlab.checks import ConfigError
from dlnlab.models import DiagonalNetwork, base
from dlnlab.preflight import preflight
from dlnlab.train import train
from tests.conftest import compose_cfg

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(sys.executable).parent

BARE = '''import torch

from dlnlab.models import DiagonalNetwork


class BareNetwork(DiagonalNetwork):
    """β = u ⊙ v and nothing else: beta() only."""

    def __init__(self, d, alpha):
        super().__init__()
        self.alpha = alpha
        self.u = torch.nn.Parameter(torch.full((d,), alpha, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def beta(self):
        return self.u * self.v
'''


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Extend to deeper models")
    return text[start:text.index("\n## ", start)]


def readme_files() -> dict[str, str]:
    """The section's code blocks by the file each names in its first line (`# mymodels.py`)."""
    blocks = re.findall(r"```\w+\n# (\S+)\n(.*?)```", readme_section(), re.S)
    return {name: body for name, body in blocks}


def write_user_model(directory: Path, conf: str) -> None:
    """README's mymodels.py in `directory`, its YAML as `directory/<conf>/model/product.yaml`."""
    files = readme_files()
    (directory / "mymodels.py").write_text(files["mymodels.py"])
    (directory / conf / "model").mkdir(parents=True, exist_ok=True)
    (directory / conf / "model" / "product.yaml").write_text(files["conf/model/product.yaml"])


def only_run(directory: Path, pattern: str = "outputs/runs/*/summary.json") -> dict:
    (summary,) = directory.glob(pattern)
    return json.loads(summary.read_text())


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A user's directory outside the checkout: README's model and YAML (in myconf/), and a model
    with beta() only; importable by this process's runs as by dlnlab-train run from there."""
    home = tmp_path_factory.mktemp("home")
    assert ROOT not in home.parents
    write_user_model(home, "myconf")
    (home / "mybare.py").write_text(BARE)
    (home / "myconf" / "model" / "bare.yaml").write_text("_target_: mybare.BareNetwork\n"
                                                        "alpha: 0.1\n")
    sys.path.insert(0, str(home))
    yield home
    sys.path.remove(str(home))
    for module in ("mymodels", "mybare"):
        sys.modules.pop(module, None)


@pytest.fixture
def user_run(home, tmp_path):
    """user_run(*overrides) -> summary: train() with the user's conf dir, as --config-dir gives."""
    count = iter(range(100))

    def _run(*overrides: str) -> dict:
        cfg = compose_cfg(f"hydra.searchpath=[file://{home / 'myconf'}]",
                          "trainer.enable_progress_bar=false",
                          f"run.output_dir={tmp_path / f'run{next(count)}'}", "data=fixture",
                          *overrides)
        return train(cfg)

    return _run


QUICK = ("callbacks=none", "~logger", "run.engine=torch")


def test_readme_names_every_hook_of_the_contract_and_no_other():
    """The README's section and base.py's list of hooks agree: each hook the contract lists is
    named, and each `name(...)` the README names is a method of DiagonalNetwork."""
    contract = set(re.findall(r"^- (?:an attribute )?`(\w+)", base.__doc__, re.M))
    assert {"descend", "power_form", "time_scale", "dual", "limit", "mirror_map"} <= contract
    section = readme_section()
    named = set(re.findall(r"`(\w+)(?:\([^`]*\))?`", section))
    assert contract <= named, contract - named
    called = set(re.findall(r"`(\w+)\([^`]*\)`", section))
    assert called and all(callable(getattr(DiagonalNetwork, name, None)) for name in called), called


@pytest.mark.slow
def test_readme_model_trains_by_dlnlab_train_run_from_its_directory(home):
    """README's second way: `dlnlab-train --config-dir myconf model=product` from the directory
    that holds mymodels.py (a console script does not search it by itself)."""
    proc = subprocess.run([str(SCRIPTS / "dlnlab-train"), "--config-dir", "myconf",
                           "model=product", "data=fixture", "run.t_max=1", "optim.lr=0.05",
                           "callbacks=none", "trainer.enable_progress_bar=false"],
                          cwd=home, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = only_run(home)
    assert summary["status"] == "completed" and summary["t_reached"] >= 1
    assert summary["config"]["model"]["_target_"] == "mymodels.ProductNetwork"
    assert summary["time_scale"] == pytest.approx(10)  # 1/α
    assert summary["final_loss"] < 0.25  # L(0) = ‖y‖²/(2n)


@pytest.mark.slow
def test_dlnlab_saddles_imports_data_from_its_directory(tmp_path):
    """A data `_target_` of the user's, in the directory dlnlab-saddles runs from."""
    (tmp_path / "mydata.py").write_text("import numpy as np\n\n\ndef diagonal():\n"
                                        "    return np.eye(3), np.array([3.0, 2.0, 1.0])\n")
    (tmp_path / "myconf" / "data").mkdir(parents=True)
    (tmp_path / "myconf" / "data" / "diagonal.yaml").write_text("_target_: mydata.diagonal\n")
    proc = subprocess.run([str(SCRIPTS / "dlnlab-saddles"), "--config-dir", "myconf",
                           "data=diagonal"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = only_run(tmp_path, "outputs/saddles/*/saddles.json")
    assert (table["n"], table["d"]) == (3, 3)
    # X = I (n = 3): coordinate i enters alone when its dual t·y_i/n reaches 1, at t = n/y_i
    assert [row["entering"] for row in table["saddles"]] == [[], [0], [1], [2]]
    assert [row["t"] for row in table["saddles"]] == pytest.approx([0, 1, 1.5, 3])


def test_readme_model_is_the_nonnegative_network_on_its_clock(user_run):
    """All three factors stay equal, so β = w³ and GD at lr is the non-negative network of depth 3
    (dlnlab.models.PositiveNetwork, w ← w − 3·lr·h·w²) at lr/3, step for step: the same β at the
    same accelerated time only if the README's clock is 3 times PositiveNetwork's."""
    steps = ("trainer.max_steps=1000",)  # to t = 3, past the first jump (t = 2)
    product = user_run("model=product", "optim.lr=0.03", *steps, *QUICK)
    positive = user_run("model=positive", "model.depth=3", "model.alpha=0.1", "optim.lr=0.01",
                        *steps, *QUICK)
    assert product["steps"] == positive["steps"] == 1000
    assert product["time_scale"] == pytest.approx(3 * positive["time_scale"], rel=1e-14)
    assert product["t_reached"] == pytest.approx(positive["t_reached"], rel=1e-12)
    np.testing.assert_allclose(product["beta"], positive["beta"], rtol=1e-10)
    assert product["final_loss"] < 0.5 * 0.25  # it learnt: L(0) = 0.25


def test_readme_model_replicas_are_its_separate_runs(user_run):
    """`model.alpha=[0.1,0.2]`: each replica is, to rounding, the run of its α alone (its own clock
    and step count)."""
    settings = ("run.t_max=2", "optim.lr=0.05", *QUICK)
    stacked = user_run("model=product", "model.alpha=[0.1,0.2]", *settings)
    assert stacked["status"] == "completed"
    for entry, alpha in zip(stacked["replicas"], (0.1, 0.2)):
        alone = user_run("model=product", f"model.alpha={alpha}", *settings)
        assert entry["alpha"] == alone["alpha"] == alpha
        assert entry["steps"] == alone["steps"]
        assert entry["t_reached"] == pytest.approx(alone["t_reached"], rel=1e-12)
        np.testing.assert_allclose(entry["beta"], alone["beta"], rtol=1e-12)
        assert entry["final_loss"] == pytest.approx(alone["final_loss"], rel=1e-10)


@pytest.mark.slow
def test_readme_model_with_the_full_overlay_compares_its_saddles(user_run):
    """Every callback and TensorBoard: the run against the non-negative limit, jump by jump (the
    worked example's limit: coordinate 0 at t = 2, then 2 alone at t = 8), and a warning naming
    what it has not (no mirror map)."""
    with pytest.warns(UserWarning, match="ProductNetwork has no mirror map: no exact-flow overlay"):
        summary = user_run("model=product", "model.alpha=0.05", "run.t_max=10", "optim.lr=0.05")
    assert summary["status"] == "completed"
    rows = summary["saddles"]
    assert [row["support_limit"] for row in rows] == [[], [0], [2]]
    assert [row["t_limit"] for row in rows] == pytest.approx([0, 2, 8])
    for row in rows[1:]:  # at α = 0.05 the jumps come within 10% of the limit's (a clock off by
        assert row["t_run"] == pytest.approx(row["t_limit"], rel=0.1)  # a factor would not)
        assert set(row["support_limit"]) <= set(row["support_run"])  # (the leaving one lags)


def test_model_with_beta_only_trains_and_says_what_it_skipped(user_run):
    """beta() alone: GD through autograd, t = τ (no clock), no dual, and a warning that there is
    no theory to compare with."""
    with pytest.warns(UserWarning, match="BareNetwork has no clock .time_scale.: no limit or flow"):
        summary = user_run("model=bare", "run.t_max=20", "optim.lr=0.05", "~logger")
    assert summary["status"] == "completed"
    assert summary["steps"] == 400 and summary["t_reached"] == pytest.approx(400 * 0.05)
    assert summary["time_scale"] is None and summary["dual"] is None and "saddles" not in summary
    assert summary["alpha"] == 0.1
    assert summary["final_loss"] < 0.05  # past the first saddle (L = 0.05 on the worked example)


@pytest.mark.parametrize("alpha", ["0", "[0.1,0]"])
def test_alpha_zero_is_refused_on_a_user_model_as_on_a_built_in_one(home, tmp_path, alpha):
    def refusal(*overrides: str) -> str:
        cfg = compose_cfg(f"hydra.searchpath=[file://{home / 'myconf'}]",
                          f"run.output_dir={tmp_path}", f"model.alpha={alpha}", *overrides)
        with pytest.raises(ConfigError) as error:
            preflight(cfg)
        return str(error.value)

    assert refusal("model=product") == refusal("model=uv") == (
        "model.alpha=0 must be a number in (0, 1), the initialisation scale (e.g. alpha=1e-10)")
