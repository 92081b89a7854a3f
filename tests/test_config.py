"""Every config file composes; typos and wrong types fail at composition; range errors name the
key."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from dlnlab.checks import ConfigError
from dlnlab.config import CONF_DIR
from tests.conftest import compose_cfg

GROUPS = {
    group.name: sorted(f.stem for f in group.glob("*.yaml"))
    for group in Path(CONF_DIR).iterdir()
    if group.is_dir()
}


@pytest.mark.parametrize(
    "group, option", [(g, o) for g, options in GROUPS.items() for o in options]
)
def test_every_config_file_composes(group, option):
    extra = ["data.path=x.npz"] if (group, option) == ("data", "file") else []
    cfg = compose_cfg(f"{group}={option}", *extra)
    assert cfg.run.t_max > 0


def test_the_groups_the_design_names_exist():
    assert {"data", "model", "optim", "trainer", "callbacks", "logger", "experiment"} <= set(GROUPS)


@pytest.mark.parametrize("override, error", [
    ("model.alpah=1e-3", ConfigCompositionException),
    ("datta=fixture", ConfigCompositionException),
    ("run.t_max=abc", ConfigCompositionException),
    ("data.n=3.5", ConfigCompositionException),
    ("trainer.enable_progress_bar=maybe", ConfigCompositionException),
])
def test_typos_and_wrong_types_fail_at_composition(override, error):
    with pytest.raises(error) as info:
        compose_cfg(override)
    key = override.split("=")[0]
    assert key.split(".")[-1] in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize("overrides, message", [
    (["model.alpha=0"], "model.alpha=0 must be a number in (0, 1)"),
    (["model.alpha=-1e-3"], "model.alpha=-0.001"),
    (["optim.lr=0"], "optim.lr=0 must be a positive step size"),
    (["optim.lr=-0.1"], "optim.lr=-0.1"),
    (["model=symmetric", "model.depth=1"], "model.depth=1 must be an integer ≥ 2"),
    (["run.t_max=0"], "run.t_max=0.0 must be a positive accelerated time"),
    (["optim=sgd", "optim.batch_size=21"], "optim.batch_size=21 must be between 1 and n=20"),
    (["optim=sgd", "optim.batch_size=0"], "optim.batch_size=0"),
    (["optim.method=adam"], "optim.method='adam' is unknown"),
    (["data.k=50"], "data.k=50"),
    (["data.features=uniform"], "data.features='uniform' is unknown"),
    (["data=file"], "data.path has no value"),
    (["model.shape=[1,2]"], "model.shape=[1, 2] must be 40 finite positive numbers"),
    (["trainer.profiler=advanced"], "trainer.profiler='advanced' is unknown"),
    (["trainer.devices=2"], "trainer.devices=2: dlnlab trains on one device"),
    (["trainer.accelerator=tpu"], "trainer.accelerator='tpu' is unknown"),
    (["run.num_threads=0"], "run.num_threads=0 must be ≥ 1"),
    (["callbacks.coordinates.threshold=-1"],
     "callbacks.coordinates.threshold=-1.0 must be a number > 0"),
    (["callbacks.plateaus.window_t=0"], "callbacks.plateaus.window_t=0.0 must be a number > 0"),
    (["callbacks.theory.max_coords=-2"], "callbacks.theory.max_coords=-2 must be an integer ≥ 0"),
    (["theory.flow_max_d=-1"], "theory.flow_max_d=-1 must be an integer ≥ 0"),
])
def test_bad_values_get_one_message_naming_key_and_value(run, overrides, message):
    with pytest.raises(ConfigError) as info:
        run(*overrides)
    assert message in str(info.value)
