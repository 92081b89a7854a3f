"""What logging and the callbacks cost: one experiment with the default callbacks, without the
figures, and with no callbacks and no logger, in one process.

    python scripts/logging_cost.py [experiment=fig1 optim.lr=1e-3 ...overrides]
"""

import sys
import tempfile

from hydra import compose, initialize_config_dir

from dlnlab import config
from dlnlab.config import CONF_DIR
from dlnlab.train import train

VARIANTS = {"default callbacks": [], "without figures": ["~callbacks.figures"],
            "no callbacks, no logger": ["callbacks=none", "~logger"]}


def main() -> None:
    config.register()
    overrides = sys.argv[1:] or ["experiment=fig1", "optim.lr=1e-3"]
    times = {}
    for name, extra in VARIANTS.items():
        with (
            tempfile.TemporaryDirectory() as out,
            initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"),
        ):
            cfg = compose(
                "train",
                overrides=[
                    *overrides,
                    "trainer.enable_progress_bar=false",
                    f"run.output_dir={out}",
                    *extra,
                ],
            )
            summary = train(cfg)
        times[name] = summary["wall_time_s"]
        print(f"{name:>24}: {times[name]:.2f} s for {summary['steps']} steps", flush=True)
    bare = times["no callbacks, no logger"]
    print(f"logging and callbacks: {times['default callbacks'] / bare - 1:+.1%} "
          f"({times['without figures'] / bare - 1:+.1%} without the end-of-run figures)")


if __name__ == "__main__":
    main()
