"""Files written whole or not at all, with one-line errors: summary.json, the sweep's job list,
checkpoints' folders. Torch-free, so the command line can use it before importing torch.

A file is written to `<name>.partial`, flushed to disk and renamed over `<name>`: a kill or a full
disk leaves the previous file whole, never a truncated one.
"""

import errno
import json
import math
import os
from pathlib import Path

import numpy as np

from dlnlab.checks import ConfigError


def finite(value):
    """JSON has no NaN or inf: non-finite numbers (a diverged run's β) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """`data` as JSON at `path`, atomically (non-finite numbers as null; numpy values as plain)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    text = json.dumps(finite(data), indent=2, default=_plain) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as e:
        remove(partial)
        raise write_error(path, e) from None


def write_error(path: Path, error: OSError) -> ConfigError:
    """One line for a write that failed: the path, the cause (e.g. ENOSPC, EROFS) and the fix."""
    code = errno.errorcode.get(error.errno or 0)
    cause = f"{error.strerror or error}" + (f" ({code})" if code else "")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on its disk"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make its folder writable"
    else:
        fix = "check its disk"
    return ConfigError(f"cannot write {path}: {cause}: {fix}, or write the run elsewhere "
                       "(hydra.run.dir=<folder>; run.output_dir=<folder> from Python)")


def check_writable(folder: Path) -> None:
    """Before any work: the run's folder exists or can be made, and takes a file."""
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"dlnlab")
        probe.unlink()
    except OSError as e:
        remove(probe)
        raise write_error(folder, e) from None


def remove(path: Path) -> None:
    """Remove a partial file if there is one, as far as the disk allows (it may be read-only)."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
