"""The console scripts' entry points: Hydra parses the command line and composes the config
before anything heavy is imported, so `--help`, a typo and a bad value answer at once."""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dlnlab import config
from dlnlab.checks import exit_on_config_error
from dlnlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_main(cfg: DictConfig) -> None:
    from dlnlab.plan import plan

    with exit_on_config_error("dlnlab-train"):
        checked = plan(cfg)
        from dlnlab.train import train  # torch, Lightning: only for a run that will start

        summary = train(cfg, checked)
    entries = summary.get("replicas", [summary])
    for entry in entries:
        name = f"{entry['replica']}: " if "replica" in entry else ""
        print(f"{name}{entry['status']}: {entry['steps']} steps to t = {entry['t_reached']:.4g}, "
              f"final loss {entry['final_loss']:.3e}")
        if entry["status"] == "diverged":
            print(f"dlnlab-train: {name}{entry['message']}", file=sys.stderr)
    print(f"{summary['status']} ({summary['wall_time_s']:.1f} s) -> {checked.output_dir}")
    if all(entry["status"] == "diverged" for entry in entries) and \
            HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(1)  # a sweep (or a replica run with some replicas left) goes on


def importable_here() -> None:
    """Let a `_target_` name a module in the directory the command runs from (a user's
    mymodels.py), as `python train.py` would: a console script does not search it. Searched last,
    so that a file there never hides an installed package."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def train() -> None:
    importable_here()
    config.register()
    train_main()


if __name__ == "__main__":
    train()
