"""Replicas: a whole sweep (α, initialisation seed, step size) as one run (docs/design.md,
"Replicas").

`model.alpha=[1e-5,1e-20,1e-100]` (likewise `model.shape_seed=[...]`, `optim.lr=[...]`; several
lists give their product, like a Hydra sweep) trains one network per value on the same X, y, as the
rows of one stack (dlnlab.stack): each step's two mat-vecs become two matrix products. Each replica
keeps its own clock and its own number of steps to reach run.t_max; one that finishes or diverges
stops while the others go on. Downstream each replica is a run of its own: its directory
`<run>/replicas/<i>_<key>=<value>/`, its TensorBoard runs, figures and summary entry.
"""

import copy
import itertools

from omegaconf import DictConfig, OmegaConf

from dlnlab.checks import ConfigError

REPLICABLE = {"model.alpha": float, "model.shape_seed": int, "optim.lr": float}


def expand(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """One (name, config) per replica: the product of the lists in REPLICABLE's keys, named like
    the jobs of a Hydra sweep (`0_model.alpha=1e-05`); [("", cfg)] when no key holds a list."""
    lists = {}
    for key, kind in REPLICABLE.items():
        value = OmegaConf.select(cfg, key)
        values = list(value) if OmegaConf.is_list(value) else [value]
        if not values:
            raise ConfigError(f"{key}=[] is empty: give a value, or a list of values for one "
                              "replica each")
        if any(isinstance(v, bool) or not isinstance(v, (int, kind)) for v in values
               if v is not None):
            example, what = ("0,1,2", "an integer") if kind is int else ("1e-5,1e-20", "a number")
            raise ConfigError(f"{key}={value!r} must be {what} or a list of them, one replica "
                              f"each (e.g. {key}=[{example}])")
        if OmegaConf.is_list(value):
            lists[key] = values
    if not lists:
        return [("", cfg)]
    replicas = []
    for i, values in enumerate(itertools.product(*lists.values())):
        replica = copy.deepcopy(cfg)
        for key, value in zip(lists, values):
            OmegaConf.update(replica, key, value)
        name = f"{i}_" + ",".join(f"{key}={value}" for key, value in zip(lists, values))
        replicas.append((name, replica))
    return replicas
