"""Resuming a run (`ckpt_path=<run>/checkpoints/last.ckpt`): the file verified whole and its run
compared with this one before any work, so that a resumed run is the interrupted one continued,
or one line (exit 2) says why not (README, "Checkpoints and resume").

The checkpoint must be a complete zip archive whose every part passes its CRC check (torch itself
reads a damaged tensor without noticing), load as plain data (torch.load(weights_only=True)) and
hold a dlnlab run's state with its configuration. Then every key of this run's resolved
configuration must equal the checkpoint's, except these (each with why it may change):

- `run.t_max`, `trainer.max_steps`: the run's length, to extend a run (or cap it). Refused when a
  network is already past the new end (it would report a time beyond run.t_max), when no network
  has steps left, or when a network of a replica run that had finished before the checkpoint's
  step would have to go on (its steps would be numbered from the others').
- `run.steps_per_call`: where blocks of steps end. Steps, records, logged points and findings do
  not depend on it (tested: a run resumed with another block length is the uninterrupted one,
  bit for bit).
- `run.num_threads`: speed. (BLAS may split a large product's sums differently with another
  number of threads, as it does between machines: rounding, not other steps.)
- `run.engine`, `trainer.accelerator`: compared by what they resolve to, the engine that steps and
  the device. Another engine or device takes the same steps to rounding (about 1e-15 relative),
  not bit for bit: allowed, with a ResumeWarning that says so.
- `trainer.enable_progress_bar`, `trainer.profiler`, `trainer.devices` (always 1), `logger`:
  display, timing and event files.
- `run.output_dir`, `ckpt_path`: where the resumed run writes, what it resumes from.
- `theory.flow_max_d`: whether the exact flow is solved for the overlays and figures, which each
  fit recomputes; no state in the checkpoint depends on it.
- `data.path`: where the data file is, provided its content is the checkpoint's (a fingerprint of
  X and y is stored in checkpoints and compared).
- callbacks: any may be removed (its findings are then absent, not wrong). `callbacks.checkpoints`
  (when to save), `callbacks.figures.threshold` and `.max_coords` (applied to the whole history
  when drawing, at the end), and the stateless LossLogger and LossFile may change or be added.
  Any other callback keeps state through the run (plateaus, coordinates, theory, the figures' jump
  clock, a user's): its settings must stay, and it cannot be added, since its findings would mix
  two settings or start at the checkpoint's step.

Everything else is refused, in particular: `data.*` (other data), `model.*` (α, depth, shape,
dtype: another network or precision), `optim.*` (method, lr, batch size), a replica list
(`model.alpha=[...]`), `run.seed` (SGD's batches: the sampler's state comes from the checkpoint, so
another seed would be silently ignored), `run.record_every_t`, `run.log_every_t`,
`run.log_loss_rtol` (which steps are recorded and logged: findings would mix two grids), and
`run.divergence_factor` (the steps before the checkpoint were judged by the old one). A key this
list does not know (a new one) is compared too.
"""

import hashlib
import math
import os
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from dlnlab.checks import ConfigError

FREE = ("run.t_max", "trainer.max_steps", "run.steps_per_call", "run.num_threads", "run.engine",
        "trainer.accelerator", "trainer.enable_progress_bar", "trainer.profiler",
        "trainer.devices", "logger", "run.output_dir", "ckpt_path", "theory.flow_max_d")
STATELESS = ("LossLogger", "LossFile", "Checkpoints")  # callbacks that may be added on resume
FREE_SETTINGS = {"Checkpoints": None, "Figures": ("threshold", "max_coords")}  # None: all
LIGHTNING = ("state_dict", "global_step", "loops", "callbacks")
DLNLAB = ("sampler", "replicas", "schedules", "histories")
ABSENT = object()
RESUME_FROM = "resume from a run's <run dir>/checkpoints/last.ckpt"


class ResumeWarning(UserWarning):
    """A resume that is allowed but not bit for bit (another engine or device), or that could not
    be checked in full (a checkpoint from before data fingerprints)."""


def fingerprint(X: torch.Tensor, y: torch.Tensor) -> str:
    """The data's identity: a hash of X's and y's shapes, dtypes and values."""
    digest = hashlib.blake2b(digest_size=16)
    for a in (X, y):
        a = a.detach().cpu().contiguous()
        digest.update(f"{tuple(a.shape)} {a.dtype};".encode())
        digest.update(a.numpy())  # its buffer: no copy of X
    return digest.hexdigest()


def load(path) -> dict:
    """The checkpoint at `path`, verified: a complete zip archive whose parts all pass their CRC
    check, loaded as plain data, with Lightning's and dlnlab's state; else one ConfigError naming
    the file and what is wrong with it."""
    path = Path(path)
    where = f"ckpt_path={path}"
    try:
        if path.stat().st_size == 0:
            raise ConfigError(f"{where} is empty (0 bytes), not a checkpoint: {RESUME_FROM}")
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("/data.pkl") for name in names):
                shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
                raise ConfigError(f"{where} is a zip archive of {shown}, not a PyTorch checkpoint: "
                                  f"{RESUME_FROM}")
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        raise ConfigError(f"{where} is truncated or not a checkpoint (not a complete zip archive, "
                          f"as torch.save writes): {RESUME_FROM}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise ConfigError(f"{where} cannot be read ({type(e).__name__}: {e}): restore the file, "
                          "or resume from another checkpoint") from None
    if damaged is not None:
        raise ConfigError(f"{where} is damaged: its part {damaged} fails its CRC check (a bad disk "
                          "or copy): restore the file, or resume from another checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(f"{where} holds Python objects, not the plain data of a dlnlab "
                          f"checkpoint: {RESUME_FROM}") from None
    except Exception as e:  # noqa: BLE001 (whatever torch raises for a file it cannot read)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{where} cannot be loaded ({reason}): {RESUME_FROM}") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in LIGHTNING):
        raise ConfigError(f"{where} is a PyTorch file but not a Lightning checkpoint: "
                          f"{RESUME_FROM}")
    state = checkpoint.get("dlnlab")
    if not isinstance(state, dict) or any(key not in state for key in DLNLAB):
        raise ConfigError(f"{where} is a Lightning checkpoint of another model (no dlnlab run "
                          f"state in it): {RESUME_FROM}")
    if "config" not in state:
        raise ConfigError(f"{where} was written by an older dlnlab that did not save the run's "
                          "configuration in checkpoints: it cannot be checked against this run, so "
                          "it is not resumed: start a new run (without ckpt_path)")
    return checkpoint


def check(cfg: DictConfig, task, device: str) -> dict:
    """The checkpoint at cfg.ckpt_path, verified (load) and checked against this run (its `task`,
    built but not started, on `device`): the same configuration but for the keys the module
    docstring lists, the same data, and steps left to take. Returns it for Lightning to restore."""
    where = f"ckpt_path={cfg.ckpt_path}"
    checkpoint = load(cfg.ckpt_path)
    state = checkpoint["dlnlab"]
    identity = state.get("identity")
    same_data = None if identity is None else identity.get("data") == task.data_fingerprint
    saved = state["config"]
    found = differences(saved, OmegaConf.to_container(cfg, resolve=True), same_data)
    if found:
        raise ConfigError(f"{where} was written by a run with other settings: {'; '.join(found)}. "
                          "Resume with the checkpoint's values, or start a new run without "
                          "ckpt_path (what may change: README, \"Checkpoints and resume\")")
    try:
        _check_networks(where, checkpoint, task)
        _check_progress(where, checkpoint, task, saved)
    except (KeyError, TypeError, AttributeError, IndexError) as e:  # a file made by hand?
        raise ConfigError(f"{where} does not hold a whole dlnlab run state ({type(e).__name__}: "
                          f"{e}): {RESUME_FROM}") from None
    if identity is None:
        warnings.warn(ResumeWarning(f"{where} was written before checkpoints held the data's "
                                    "fingerprint: the configuration was checked, not the data"),
                      stacklevel=2)
    elif (identity.get("engine"), identity.get("device")) != (task.engine.name, device):
        exact = f"run.engine={identity.get('engine')}"
        if identity.get("device") != device:
            exact += f" on {identity.get('device')}"
        warnings.warn(ResumeWarning(
            f"{where} was stepped by the {identity.get('engine')} engine on "
            f"{identity.get('device')}, this run steps by {task.engine.name} on {device}: the "
            f"same steps to rounding (about 1e-15), not bit for bit ({exact} keeps them exact)"),
            stacklevel=2)
    return checkpoint


def _check_networks(where: str, checkpoint: dict, task) -> None:
    """The checkpoint's networks are this run's: as many, with tensors of the same shapes (a
    consistent file whose configuration matches always has them)."""
    replicas = checkpoint["dlnlab"]["replicas"]
    if len(replicas) != len(task.replicas):
        raise ConfigError(f"{where} holds {len(replicas)} networks, this run {len(task.replicas)}: "
                          f"{RESUME_FROM} with the same settings")
    mine = {name: tuple(t.shape) for name, t in task.state_dict().items()}
    theirs = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()
              if isinstance(t, torch.Tensor)}
    for name in sorted(set(mine) | set(theirs)):
        if mine.get(name) != theirs.get(name):
            raise ConfigError(f"{where} holds {name} of shape {theirs.get(name)}, this run's is "
                              f"{mine.get(name)}: {RESUME_FROM} with the same settings")


def _check_progress(where: str, checkpoint: dict, task, saved: dict) -> None:
    """Each network continues from its step to this run's end (run.t_max, trainer.max_steps), and
    at least one has steps left; see the module docstring."""
    step = checkpoint["global_step"]
    going = []
    for replica, state in zip(task.replicas, checkpoint["dlnlab"]["replicas"]):
        if state["status"] == "diverged":
            continue
        done, end = state["steps_done"], replica.max_steps
        name = f"its network {replica.name} is" if replica.name else "it is"
        if done > end:
            raise ConfigError(
                f"{where}: {name} at step {done} (t = {replica.time(done):.4g}), past this run's "
                f"end at step {end} (t = {replica.time(end):.4g}): resume with run.t_max ≥ "
                f"{_up(replica.time(done))} (and trainer.max_steps ≥ {done}, or -1)")
        if done < end and done < step:
            t_max = saved.get("run", {}).get("t_max")
            raise ConfigError(
                f"{where}: its network {replica.name} had finished at step {done} (t = "
                f"{replica.time(done):.4g}), before the checkpoint's step {step}: a replica run "
                "goes on only where all its networks still ran together, so keep run.t_max="
                f"{t_max:g} (or start a new run with the longer run.t_max)")
        if done < end:
            going.append(replica)
    if not going:
        if all(state["status"] == "diverged" for state in checkpoint["dlnlab"]["replicas"]):
            raise ConfigError(f"{where}: every network of its run diverged, nothing is left to "
                              "run: start a new run (a smaller optim.lr)")
        t = max(replica.time(min(state["steps_done"], replica.max_steps)) for replica, state in
                zip(task.replicas, checkpoint["dlnlab"]["replicas"]))
        raise ConfigError(f"{where}: its run already reached this run's end (step {step}, t = "
                          f"{t:.4g}): nothing is left to run; pass a larger run.t_max to extend it")


class CheckpointFiles(TorchCheckpointIO):
    """Lightning's checkpoint files for a dlnlab run: written straight to the path given (the
    Checkpoints callback writes a partial file beside last.ckpt and renames it; Lightning's own
    writer goes through a temporary file in /tmp and a copy), and read verified (`load`): the
    checkpoint a resumed run restores is the one `check` read."""

    def __init__(self, path=None, restored: dict | None = None):
        super().__init__()
        self.path, self.restored = path, restored

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with open(path, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        if self.restored is not None and Path(path) == Path(self.path):
            checkpoint, self.restored = self.restored, None
            return checkpoint
        return load(path)


def differences(saved: dict, now: dict, same_data: bool | None = None) -> list[str]:
    """'key (value there, value here)' for each key that differs from the checkpoint's
    configuration and may not (the module docstring); same_data: whether X and y are the
    checkpoint's (None: not known, so data.path is compared too)."""
    saved, now = dict(saved), dict(now)
    free = FREE + (("data.path",) if same_data else ())
    callbacks = _callbacks(saved.pop("callbacks", None) or {}, now.pop("callbacks", None) or {})
    there, here = _flatten(saved), _flatten(now)
    found = _compare(there, here, lambda key: any(key == f or key.startswith(f + ".")
                                                  for f in free))
    if same_data is False and not any(item.startswith("data.") for item in found):
        found.insert(0, "the data (X and y differ from those the checkpoint's run trained on)")
    return found + callbacks


def _callbacks(saved: dict, now: dict) -> list[str]:
    """The differences in callbacks: a removed one is fine, an added one only if stateless, and a
    kept one's settings may change only where FREE_SETTINGS says."""
    found = []
    for name, node in now.items():
        kind = _kind(node)
        if name not in saved:
            if kind not in STATELESS:
                found.append(f"callbacks.{name} (absent there, here: its findings would start "
                             f"at the checkpoint's step; drop it with ~callbacks.{name})")
            continue
        free = FREE_SETTINGS.get(kind, ()) if kind == _kind(saved[name]) else ()
        if free is None:
            continue
        prefix = f"callbacks.{name}"
        found += _compare(_flatten(saved[name], prefix), _flatten(node, prefix),
                          lambda key: key.rpartition(".")[2] in free)
    return found


def _kind(node) -> str | None:
    """A callback's class name, if it is one of dlnlab's (its _target_ under dlnlab.callbacks)."""
    target = node.get("_target_", "") if isinstance(node, dict) else ""
    return target.rpartition(".")[2] if target.startswith("dlnlab.callbacks.") else None


def _compare(there: dict, here: dict, free) -> list[str]:
    """'key (value there, value here)' for each flat key whose values differ and not free(key);
    a node whose _target_ differs (another class) is that one entry, not each of its keys."""
    found, other = [], []
    for key in [*here, *(key for key in there if key not in here)]:
        a, b = there.get(key, ABSENT), here.get(key, ABSENT)
        if a == b or free(key) or any(key.startswith(node) for node in other):
            continue
        if key.endswith("._target_"):
            other.append(key.removesuffix("_target_"))
            found = [item for item in found if not item.startswith(other[-1])]
        found.append(f"{key} ({_show(a)} there, {_show(b)} here)")
    return found


def _flatten(node, prefix: str = "") -> dict:
    """A nested configuration as {dotted key: value}; lists are values."""
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def _up(x: float) -> str:
    """x rounded up to 4 significant digits (a lower bound that stays one)."""
    scale = 10.0 ** (math.floor(math.log10(x)) - 3)
    return f"{math.ceil(x / scale * (1 - 1e-12)) * scale:.4g}"


def _show(value) -> str:
    return "absent" if value is ABSENT else "null" if value is None else str(value)
