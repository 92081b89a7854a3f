"""dlnlab-saddles: print the theoretical saddle table (Algorithm 1) for the data a run would use.

Takes the same data configs and overrides as dlnlab-train (`dlnlab-saddles data=fixture`), prints
k, t_k, L(β_k), the support and the coordinates entering and leaving, and writes `saddles.json`.
"""

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dlnlab import config
from dlnlab.checks import exit_on_config_error
from dlnlab.cli import importable_here
from dlnlab.config import CONF_DIR
from dlnlab.preflight import build
from dlnlab.theory import saddle_path


def format_table(rows: list[dict]) -> str:
    lines = [f"{'k':>3} {'t_k':>12} {'loss':>12}  {'in':<10} {'out':<10} support"]
    for row in rows:
        entering = " ".join(f"+{i}" for i in row["entering"])
        leaving = " ".join(f"-{i}" for i in row["leaving"])
        lines.append(f"{row['k']:>3} {row['t']:>12.6g} {row['loss']:>12.4e}  "
                     f"{entering:<10} {leaving:<10} {{{', '.join(map(str, row['support']))}}}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="saddles")
def main(cfg: DictConfig) -> None:
    with exit_on_config_error("dlnlab-saddles"):
        X, y = build(cfg.data, "data")
    path = saddle_path(X, y)
    rows = path.table()
    print(format_table(rows))
    out = Path(HydraConfig.get().runtime.output_dir) / "saddles.json"
    out.write_text(json.dumps({"n": len(y), "d": X.shape[1], "converged": path.converged,
                               "saddles": rows}, indent=1))
    incomplete = "" if path.converged else " (incomplete: iteration cap)"
    print(f"{len(rows) - 1} jumps{incomplete} -> {out}")


def cli() -> None:
    importable_here()  # a data `_target_` of the user's, as for dlnlab-train
    config.register()
    main()


if __name__ == "__main__":
    cli()
