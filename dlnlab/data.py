"""Regression data (X, y): synthetic generators, files, and the worked example (numpy only).

Every source returns float64 numpy arrays X (n × d, rows are samples) and y (n,), checked by
`check_xy` before any training starts.
"""

import csv
import io
import math
import numbers
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dlnlab.checks import ConfigError, check_xy, scale_bounds


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def synthetic(n: int = 20, d: int = 40, k: int = 3, noise: float = 0.0,
              features: str = "gaussian", rho: float = 0.5,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features (iid, or correlated with Σ_ij = rho^|i−j|), y = X β* + noise·ε.

    β* has k non-zero coordinates at random positions, each ±U[0.5, 1.5], so the support
    is visible above the noise. Every argument is checked before anything is drawn: n, d, k and
    seed are integers (seed ≥ 0, as numpy's generator needs); noise is at most a tenth of the
    upper end of `dlnlab.checks.scale_bounds(n, d)`, so that y stays where XᵀX/n and ‖y‖²/2n are
    finite (|ε| < 10 but for odds of 1.5e-23 a sample); k = 0 needs noise > 0 (else y = 0,
    nothing to learn) and at least 1e3 times the lower end (else y falls below float64's safe
    range). The result then passes `check_xy(..., nonzero=True)` like a file's data.
    """
    for name, v in (("n", n), ("d", d)):
        if not _is_int(v) or v < 1:
            raise ConfigError(f"{name}={v!r} must be a positive integer")
    if not _is_int(k) or not 0 <= k <= d:
        raise ConfigError(f"k={k!r} (non-zeros of the ground truth) must be an integer between 0 "
                          f"and d={d}")
    if not _is_real(noise) or not noise >= 0:
        raise ConfigError(f"noise={noise!r} must be a number ≥ 0 (the standard deviation of the "
                          "label noise)")
    lo, hi = scale_bounds(n, d)
    if noise > hi / 10:
        raise ConfigError(f"noise={noise!r} is too large: y would pass {hi:.3g}, the largest entry "
                          f"for which XᵀX/n and ‖y‖²/2n stay finite in float64 at n={n}, d={d}: "
                          f"use noise ≤ {hi / 10:.3g} (noise=1 is already the signal's size)")
    least = 10.0 ** math.ceil(math.log10(1e3 * lo))  # pure noise: max |noise·ε| ≥ lo, bar bad luck
    if k == 0 and noise == 0:
        raise ConfigError("k=0 with noise=0.0 makes y = 0, nothing to learn: use k ≥ 1 (the "
                          "non-zeros of the ground truth) or noise > 0 (e.g. noise=1.0)")
    if k == 0 and noise < least:
        raise ConfigError(f"k=0 with noise={noise!r} makes y = noise·ε too small for float64 "
                          f"(below {lo:.3g}, dlnlab.checks.scale_bounds): use noise ≥ {least:.0e} "
                          "or k ≥ 1")
    if features not in ("gaussian", "correlated"):
        raise ConfigError(f"features={features!r} is unknown: use 'gaussian' or 'correlated'")
    if not _is_real(rho) or not -1 < rho < 1:
        raise ConfigError(f"rho={rho!r} must be a number in (−1, 1) (the correlation of "
                          "neighbouring features)")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer ≥ 0 (e.g. seed=0)")
    try:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, d))
        if features == "correlated":
            cov = rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
            X = X @ np.linalg.cholesky(cov).T
        beta_star = np.zeros(d)
        support = rng.choice(d, size=k, replace=False)
        beta_star[support] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(0.5, 1.5, size=k)
        y = X @ beta_star + noise * rng.standard_normal(n)
    except MemoryError:
        raise ConfigError(f"n={n}, d={d}: X would take {8 * n * d / 2**30:.3g} GiB, more than "
                          "this machine can allocate: use a smaller n or d") from None
    return check_xy(X, y, source=f"noise={noise!r}", nonzero=True)


def worked_example() -> tuple[np.ndarray, np.ndarray]:
    """The public worked example of docs/theory.md §1.4: jump times 2, 8, 552/49; coordinate 0
    deactivates."""
    X = np.array([[1.0, 0.5, 0.7, 0.0], [0.5, 1.0, 0.1, 0.7]])
    y = np.array([1.0, 0.0])
    return X, y


def load(path: str) -> tuple[np.ndarray, np.ndarray]:
    """X and y from a .npz file (arrays `X` and `y`) or a .csv file (last column y, optional
    header).

    .npz: arrays X (n × d) and y (n,) as np.savez writes them; other arrays in it are ignored;
    object (pickled) arrays are refused. .csv: UTF-8 (a leading BOM is skipped, any line ending),
    comma-separated, one sample per row with y last; blank lines and lines starting with '#' are
    skipped. Its first row is a header, and dropped, only if every field in it is a name: not a
    number, not empty and not a missing-value mark such as NA; a first row of numbers (NaN
    included) is data. The suffix may be upper-case; '~' is expanded. Each failure is one
    ConfigError naming the path: missing, a directory, unreadable, empty, damaged, another
    delimiter, ragged rows, trailing commas, a field that is not a number (by line and column),
    then whatever `check_xy(..., nonzero=True)` refuses (NaN, inf, scale, y = 0 or X = 0).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise ConfigError(f"path={path!r} is not a file path: give data.path=/path/to/data.npz "
                          "or .csv")
    p = Path(path).expanduser()
    where = f"path={str(os.fspath(path))!r}"
    size = _check_file(p, str(os.fspath(path)), where)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        raise ConfigError(f"{where} is a .npy file, which holds one array: save X and y together "
                          "with np.savez(path, X=X, y=y) (a .npz)")
    if suffix not in (".npz", ".csv"):
        raise ConfigError(f"{where}: unknown file type {p.suffix!r}: use .npz (arrays X, y) or "
                          ".csv (last column y)")
    if size == 0:
        raise ConfigError(f"{where} is empty (0 bytes): write the data into it (np.savez(path, "
                          "X=X, y=y) for a .npz, rows of features then y for a .csv)")
    try:
        fh = open(p, "rb")
    except PermissionError:
        raise ConfigError(f"{where}: permission denied: make the file readable by this user "
                          "(e.g. chmod u+r)") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot be opened ({e.strerror})") from None
    with fh:
        if suffix == ".npz":
            X, y = _npz_arrays(fh, where)
        else:
            try:
                raw = fh.read()
            except OSError as e:
                raise ConfigError(f"{where}: cannot be read ({e.strerror})") from None
            X, y = _csv_arrays(raw, where)
    return check_xy(X, y, source=where, nonzero=True)


def _check_file(p: Path, given: str, where: str) -> int:
    """The size of the regular file at p (given as `given`), or a ConfigError saying what is
    there instead."""
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise ConfigError(f"{where} is a broken symbolic link (to {os.readlink(p)!r}): give "
                              "the data file itself") from None
        full = str(p.absolute())
        looked = f" ({full})" if full != given else ""
        raise ConfigError(f"{where}: no such file{looked}: give data.path=/path/to/data.npz or "
                          ".csv") from None
    except NotADirectoryError:
        above = next((q for q in reversed(p.absolute().parents) if q.is_file()), None)
        raise ConfigError(f"{where}: no such file ({above} is a file, not a folder)") from None
    except PermissionError:
        raise ConfigError(f"{where}: permission denied on a folder of the path (it must be "
                          "searchable: chmod +x it)") from None
    except OSError as e:
        raise ConfigError(f"{where}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where} is a directory: give the data file in it (data.path="
                          "/path/to/data.npz or .csv)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where} is not a regular file (a device, pipe or socket): give a .npz "
                          "or .csv file")
    return st.st_size


def _npz_arrays(fh, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The arrays X and y of an open .npz file."""
    again = "write the file again with np.savez(path, X=X, y=y)"
    head = fh.read(6)
    fh.seek(0)
    if head == b"\x93NUMPY":
        raise ConfigError(f"{where} is a .npy file (one array), not a .npz: save X and y together "
                          "with np.savez(path, X=X, y=y)")
    if not zipfile.is_zipfile(fh):
        if head.startswith(b"PK\x03\x04"):
            raise ConfigError(f"{where} is a damaged or truncated .npz archive (its zip "
                              f"directory is missing): {again}")
        raise ConfigError(f"{where} is not a .npz archive: save one with np.savez(path, X=X, y=y)")
    fh.seek(0)
    try:
        f = np.load(fh, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ConfigError(f"{where} is a damaged .npz archive ({e}): {again}") from None
    with f:
        missing = {"X", "y"} - set(f.files)
        if missing:
            raise ConfigError(f"{where}: the .npz holds arrays {sorted(f.files)}, not "
                              f"{sorted(missing)}: save it with np.savez(path, X=X, y=y)")
        return _npz_member(f, "X", where), _npz_member(f, "y", where)


def _npz_member(f, name: str, where: str) -> np.ndarray:
    """Array `name` of an open NpzFile; object arrays and damaged members are ConfigErrors."""
    again = "write the file again with np.savez(path, X=X, y=y)"
    try:
        a = f[name]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ConfigError(f"{where}: {name} is an object array (Python objects, which are not "
                              "unpickled, for safety): save numbers, e.g. np.savez(path, "
                              "X=X.astype(float), y=y.astype(float))") from None
        raise ConfigError(f"{where}: {name}.npy in the archive is damaged ({e}): {again}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError) as e:
        raise ConfigError(f"{where}: {name}.npy in the archive is damaged or truncated ({e}): "
                          f"{again}") from None
    if not isinstance(a, np.ndarray):  # a member without .npy: numpy hands back its raw bytes
        raise ConfigError(f"{where}: {name} in the archive is not a .npy array: {again}")
    return a


_MISSING = {"na", "n/a", "#n/a", "null", "none", "nil", "missing", "?", "-", "--"}


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_name(field: str) -> bool:
    text = field.strip()
    return bool(text) and text.lower() not in _MISSING and not _is_number(text)


def _other_delimiter(fields: list[str]) -> str | None:
    """How a row split at commas seems to be delimited instead, if it does ("';'", "tabs", ...)."""
    line = ",".join(fields)
    for mark, shown in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if mark in line:
            return shown
    words = line.split()
    if len(fields) == 1 and len(words) > 1 and all(map(_is_number, words)):
        return "spaces"
    return None


def _delimiter_error(where: str, fields: list[str]) -> ConfigError | None:
    shown = _other_delimiter(fields)
    if shown is None:
        return None
    decimals = " between values and '.' for decimals" if len(fields) > 1 else ""
    return ConfigError(f"{where}: the CSV seems to use {shown} as delimiter: use commas{decimals}")


def _csv_arrays(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """X (all columns but the last) and y (the last) of a CSV file's bytes."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        utf16 = " (a UTF-16 file)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}){utf16}: save the CSV as UTF-8") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError(f"{where}: line {line} holds a NUL byte, so this is not a text CSV: "
                          "save it as plain UTF-8 text")
    rows = []  # (line number, fields) of the non-blank, non-comment lines
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for fields in reader:
            if not "".join(fields).strip() and len(fields) <= 1:
                continue  # a blank line
            if fields[0].lstrip().startswith("#"):
                continue  # a comment, e.g. np.savetxt's header
            rows.append((reader.line_num, fields))
    except csv.Error as e:
        raise ConfigError(f"{where}: line {reader.line_num} is not valid CSV ({e})") from None
    need = "a CSV needs at least one row and two columns (features, then y)"
    if not rows:
        raise ConfigError(f"{where}: {need}: it has only blank or '#' comment lines")
    header = None
    first = rows[0][1]
    if len(first) > 1 and not first[0].strip() and all(map(_is_name, first[1:])):
        raise ConfigError(f"{where}: the header's first name is empty, as pandas writes for its "
                          "index, which would become a feature: save with df.to_csv(path, "
                          "index=False)")
    if all(map(_is_name, first)):
        header = rows.pop(0)
        if not rows:
            raise ConfigError(f"{where}: {need}: it has a header (line {header[0]}) but no data "
                              "rows")
    width = len(header[1]) if header else len(rows[0][1])
    if width == 1 and all(len(fields) == 1 for _, fields in rows):
        raise _delimiter_error(where, rows[0][1]) or ConfigError(f"{where}: {need}: it has one "
                                                                 "column")
    if all(len(fields) >= 2 and not fields[-1].strip() for _, fields in rows):
        raise ConfigError(f"{where}: every row ends with a comma (an empty last column): remove "
                          "the trailing commas, so that y is each row's last value")
    for line, fields in rows:
        if len(fields) != width:
            ref = f"the header (line {header[0]})" if header else f"line {rows[0][0]}"
            raise _delimiter_error(where, fields) or ConfigError(
                f"{where}: not a rectangular CSV: line {line} has {len(fields)} values but {ref} "
                f"has {width}: every row needs the same columns (features, then y)")
    try:
        table = np.array([fields for _, fields in rows], dtype=np.float64)
    except ValueError:
        raise _field_error(where, rows, header is None) from None
    return np.ascontiguousarray(table[:, :-1]), table[:, -1].copy()


def _field_error(where: str, rows: list, headerless: bool) -> ConfigError:
    """The error for the first field of `rows` that is not a number."""
    for i, (line, fields) in enumerate(rows):
        for j, field in enumerate(fields):
            if _is_number(field):
                continue
            text, at = field.strip(), f"line {line}, column {j + 1}"
            if not text:
                return ConfigError(f"{where}: {at} is empty: fill it in or drop the row")
            if text.lower() in _MISSING:
                return ConfigError(f"{where}: {at} is {text!r}, a missing value: impute it or "
                                   "drop the row")
            delimiter = _delimiter_error(where, fields)
            if delimiter is not None:
                return delimiter
            shown = text if len(text) <= 40 else text[:37] + "..."
            hint = ("a header is dropped only if every field in it is a name"
                    if i == 0 and headerless else "write it as a number or drop the row")
            return ConfigError(f"{where}: {at} is {shown!r}, not a number: {hint}")
    return ConfigError(f"{where}: a field is not a number")  # unreachable: numpy found one
