"""Shared helpers: composing configs as dlnlab-train does, and running train() into tmp dirs."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from dlnlab import config
from dlnlab.config import CONF_DIR
from dlnlab.train import train

config.register()
torch.set_num_threads(1)


def compose_cfg(*overrides: str):
    """The config `dlnlab-train OVERRIDES` would run, without Hydra's output directory."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture
def run(tmp_path):
    """run(*overrides) -> summary, training quietly into a fresh directory under tmp_path."""
    count = iter(range(1000))

    def _run(*overrides: str) -> dict:
        out = tmp_path / f"run{next(count)}"
        return train(
            compose_cfg("trainer.enable_progress_bar=false", f"run.output_dir={out}", *overrides)
        )

    return _run
