"""The console scripts' entry points: Hydra parses the command line and composes the config
before anything heavy is imported, so `--help`, a typo and a bad value answer at once.

Exit status of dlnlab-train: 0 completed; 1 diverged (every replica) or failed; 2 a configuration
error (one line naming the value and the fix, nothing run); 128 + the signal when interrupted
(130 Ctrl-C, 143 SIGTERM; the run still writes its checkpoint, summary and figures). With -m
(a sweep, dlnlab.sweeps): 2 if any point is invalid (all are listed, no job runs), else each job
runs whatever the others do and the sweep exits 1 if any failed or left no summary.
"""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dlnlab import config, sweeps
from dlnlab.checks import exit_on_config_error
from dlnlab.config import CONF_DIR

PROGRAM = "dlnlab-train"


def run(cfg: DictConfig) -> int:
    """Check, train, print the outcome; return the exit status (dlnlab.sweeps.exit_status)."""
    checked = sweeps.check(cfg)
    from dlnlab.train import train  # torch, Lightning: only for a run that will start

    summary = train(cfg, checked)
    entries = summary.get("replicas", [summary])
    for entry in entries:
        name = f"{entry['replica']}: " if "replica" in entry else ""
        print(f"{name}{entry['status']}: {entry['steps']} steps to t = {entry['t_reached']:.4g}, "
              f"final loss {entry['final_loss']:.3e}")
        if entry["status"] == "diverged":
            print(f"{PROGRAM}: {name}{entry['message']}", file=sys.stderr)
    print(f"{summary['status']} ({summary['wall_time_s']:.1f} s) -> {checked.output_dir}")
    if summary["status"] == "interrupted" and summary.get("signal"):
        print(f"{PROGRAM}: interrupted by {summary['signal']}: resume with "
              f"ckpt_path={checked.output_dir / 'checkpoints' / 'last.ckpt'}", file=sys.stderr)
    return sweeps.exit_status(summary)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_main(cfg: DictConfig) -> int:
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return sweeps.run_job(cfg, run)  # never raises: the launcher goes on with the others
    with exit_on_config_error(PROGRAM):
        status = run(cfg)
    if status:
        sys.exit(status)
    return status


GROUP_OPTIONS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
                 "--experimental-rerun")


def check_group_overrides(argv: list[str]) -> None:
    """`logger=null` (any config group set to null) is refused by Hydra with a traceback: one
    line instead, with the way to remove a group (`~logger`), exit 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    dirs, skip = [Path(CONF_DIR)], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in GROUP_OPTIONS:
            skip = True
            if arg in ("-cd", "--config-dir") and i + 1 < len(argv):
                dirs.append(Path(argv[i + 1]))
            continue
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([arg])
        except Exception:
            continue  # Hydra reports it
        key = override.key_or_group
        group = key.startswith("hydra/") or any((d / key).is_dir() for d in dirs)
        if group and not override.is_delete() and override.value() is None:
            print(f"{PROGRAM}: error: {arg}: {key} is a config group, which takes an option "
                  f"name: remove it with ~{key} (e.g. {PROGRAM} ~{key})", file=sys.stderr)
            sys.exit(2)


def importable_here() -> None:
    """Let a `_target_` name a module in the directory the command runs from (a user's
    mymodels.py), as `python train.py` would: a console script does not search it. Searched last,
    so that a file there never hides an installed package."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def train() -> None:
    importable_here()
    check_group_overrides(sys.argv[1:])
    config.register()
    train_main()


if __name__ == "__main__":
    train()
