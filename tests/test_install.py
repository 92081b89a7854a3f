"""dlnlab installed as users install it, run from a directory that is not the checkout: a wheel
built from the sdist (as an index would serve it) in a fresh environment; and an editable install
of a checkout with the user's model at its top level (README, "Extend to deeper models").

The scratch environments are virtual environments of their own whose dependencies (torch, …) come
from this one's folders by a path file. Python reads the .pth files of a site-packages only, not
of the folders a path file adds: this checkout's editable install (a .pth file and its import hook)
is not active there. The wheel is built once for the module (about 10 s).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.test_extension import only_run, write_user_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300


def check(*command, cwd: Path | None = None, env: dict | None = None) -> str:
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{command}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pip(*args) -> str:
    return check(sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args)


def copy_checkout(dest: Path) -> Path:
    """The working tree as git sees it (committed and new files, nothing ignored: no build
    output, no editable-install metadata); the whole tree less such folders where git is not."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
        files = [f for f in listed.stdout.decode().split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", "outputs", ".pytest_cache"))
        return dest
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


def dependencies() -> list[Path]:
    """The folders this process imports from, less the standard library (a new environment has
    its own) and the checkout (CI's .venv inside it stays). They come after the new environment's
    own site-packages, so its dlnlab is the one imported, its submodules looked for in it alone."""
    stdlib = Path(sysconfig.get_path("stdlib")).resolve()  # lib-dynload is inside
    folders = dict.fromkeys(Path(p or ".").resolve() for p in sys.path)
    return [p for p in folders if p.is_dir() and p != ROOT and not p.is_relative_to(stdlib)]


def scratch_env(path: Path) -> Path:
    """A virtual environment whose dependencies are this one's (see the module docstring)."""
    check(sys.executable, "-m", "venv", "--without-pip", path)
    (site,) = path.glob("lib/python*/site-packages")
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies()))
    return path


def environ() -> dict:
    """This process's environment without PYTHONPATH (which could lead back to the checkout)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def main_config_dir(run_dir: Path) -> Path:
    """Where Hydra read the run's configuration from (recorded in the run's .hydra/hydra.yaml)."""
    hydra = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    (source,) = [s for s in hydra["runtime"]["config_sources"] if s["provider"] == "main"]
    return Path(source["path"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from the sdist of a copy of this checkout (`python -m build`'s way)."""
    tmp = tmp_path_factory.mktemp("dist")
    source = copy_checkout(tmp / "source")
    system = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]
    pip("install", "--target", tmp / "backend", *system["requires"])
    env = {**environ(), "PYTHONPATH": str(tmp / "backend")}
    check(sys.executable, "-c", "import importlib, sys; "
          "importlib.import_module(sys.argv[1]).build_sdist(sys.argv[2])",
          system["build-backend"], tmp / "sdist", cwd=source, env=env)
    (sdist,) = (tmp / "sdist").glob("dlnlab-*.tar.gz")
    pip("wheel", "--no-deps", "--wheel-dir", tmp / "wheel", sdist)
    (built,) = (tmp / "wheel").glob("dlnlab-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh environment with the wheel installed, its console scripts in bin/."""
    env = scratch_env(tmp_path_factory.mktemp("wheel-install") / "venv")
    pip("--python", env / "bin" / "python", "install", "--no-deps", wheel)
    return env


@pytest.mark.slow
def test_wheel_holds_every_module_and_config(wheel):
    """pyproject.toml lists the packages by hand (dlnlab.conf is the checkout's conf/): one added
    to dlnlab/ but not there, or a YAML file left out, fails here."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "dlnlab").rglob("*.py")}
    configs = {f"dlnlab/{p.relative_to(ROOT)}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert "dlnlab/conf/train.yaml" in configs
    assert modules - names == set(), "add the package to [tool.setuptools] packages"
    assert configs - names == set()


@pytest.mark.slow
def test_wheel_install_trains_and_prints_saddles_from_anywhere(installed, tmp_path):
    """`pip install <wheel>`, then dlnlab-train and dlnlab-saddles from a directory of one's own,
    with the configuration shipped in the package."""
    check(installed / "bin" / "dlnlab-train", "data=fixture", "run.t_max=0.5",
          "trainer.enable_progress_bar=false", cwd=tmp_path, env=environ())
    summary = only_run(tmp_path)
    assert summary["status"] == "completed" and summary["t_reached"] >= 0.5
    assert summary["config"]["model"]["_target_"] == "dlnlab.models.UVNetwork"
    assert (summary["n"], summary["d"]) == (2, 4)
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert (run_dir / "figures" / "loss.png").is_file()
    (site,) = installed.glob("lib/python*/site-packages")
    assert main_config_dir(run_dir) == site / "dlnlab" / "conf"

    out = check(installed / "bin" / "dlnlab-saddles", "data=fixture", cwd=tmp_path,
                env=environ())
    assert "3 jumps" in out
    table = only_run(tmp_path, "outputs/saddles/*/saddles.json")
    # the worked example (conf/data/fixture.yaml): jumps at t = 2, 8 and 552/49
    assert [row["t"] for row in table["saddles"]] == pytest.approx([0, 2, 8, 552 / 49])


@pytest.mark.slow
def test_editable_checkout_trains_a_model_at_its_top_level(tmp_path):
    """README's first way: in a checkout installed with `pip install -e`, mymodels.py at its top
    level and the YAML in its conf/model/, then `dlnlab-train model=product` from there."""
    checkout = copy_checkout(tmp_path / "checkout")
    env = scratch_env(tmp_path / "venv")
    pip("--python", env / "bin" / "python", "install", "--no-deps", "--editable", checkout)
    write_user_model(checkout, "conf")
    check(env / "bin" / "dlnlab-train", "model=product", "data=fixture", "run.t_max=1",
          "optim.lr=0.05", "callbacks=none", "trainer.enable_progress_bar=false", cwd=checkout,
          env=environ())
    summary = only_run(checkout)
    assert summary["status"] == "completed"
    assert summary["config"]["model"]["_target_"] == "mymodels.ProductNetwork"
    (run_dir,) = (checkout / "outputs" / "runs").iterdir()
    assert main_config_dir(run_dir) == checkout / "conf"
