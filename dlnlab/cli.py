"""The console scripts' entry points: Hydra parses the command line and composes the config
before anything heavy is imported, so `--help`, a typo and a bad value answer at once.

Exit status of dlnlab-train: 0 completed; 1 diverged (every replica) or failed; 2 a configuration
error (one line naming the value and the fix, nothing run); 128 + the signal when interrupted
(130 Ctrl-C, 143 SIGTERM; the run still writes its checkpoint, summary and figures). With -m
(a sweep, dlnlab.sweeps): 2 if any point is invalid (all are listed, no job runs), else each job
runs whatever the others do and the sweep exits 1 if any failed or left no summary (or all
diverged), 128 + the signal if interrupted.
"""

import os
import sys
import warnings
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
    if cfg.logger:
        print(f"TensorBoard: tensorboard --logdir {checked.output_dir}, then open "
              "http://localhost:6006/?smoothing=0#timeseries (vs_t/ charts: step = 1000·t)")
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


OPTIONS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
           "--experimental-rerun")  # Hydra's options that take a value


def command_line(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the overrides, Hydra's options with their values) of a command line, as Hydra splits it."""
    overrides, options = [], {}
    args = iter(argv)
    for arg in args:
        if arg in OPTIONS:
            options[arg] = next(args, "")
        elif arg.startswith("-"):
            options[arg] = ""
        elif "=" in arg:
            overrides.append(arg)
    return overrides, options


def check_group_overrides(argv: list[str]) -> None:
    """`logger=null` (any config group set to null) is refused by Hydra with a traceback: one
    line instead, with the way to remove a group (`~logger`), exit 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides, options = command_line(argv)
    dirs = [Path(CONF_DIR)] + [Path(options[o]) for o in ("-cd", "--config-dir") if o in options]
    for arg in overrides:
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


def check_interpolations(argv: list[str]) -> None:
    """An override holding an interpolation that cannot resolve (`run.t_max=${nope}`) fails inside
    Hydra, with a traceback, when the run directory is named after the overrides: composed and
    resolved here first, it is one line, exit 2. (A sweep's points are checked by SweepCheck.)"""
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import setup_globals

    overrides, options = command_line(argv)
    multirun = {"-m", "--multirun"} & set(options)
    other_conf = {"-cp", "--config-path", "-cd", "--config-dir"} & set(options)
    if multirun or other_conf or not any("${" in o for o in overrides) or \
            any("${hydra:" in o for o in overrides):  # that one resolves only inside the run
        return
    name = options.get("-cn") or options.get("--config-name") or "train"
    setup_globals()  # Hydra's resolvers (now, hydra), as hydra.main registers them
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(name, overrides=overrides)
    except Exception:
        return  # Hydra reports it
    with exit_on_config_error(PROGRAM):
        sweeps.resolve(cfg)


def one_line_warnings() -> None:
    """dlnlab's own warnings (a part of the theory that cannot be had, a figure that could not be
    drawn) as one line each on the console, not Python's two with a source line."""
    default = warnings.formatwarning

    def formatted(message, category, filename, lineno, line=None):
        if category.__module__.startswith("dlnlab") or "dlnlab" in filename:
            return f"{PROGRAM}: warning: {message}\n"
        return default(message, category, filename, lineno, line)
    warnings.formatwarning = formatted


def train() -> None:
    argv = sys.argv[1:]
    one_line_warnings()
    importable_here()
    check_group_overrides(argv)
    config.register()
    check_interpolations(argv)
    train_main()


if __name__ == "__main__":
    train()
