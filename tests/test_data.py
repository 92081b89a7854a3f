"""Data sources: the generator's properties, file loading, and one clear error for each bad file."""

import builtins
import io
import os
import pathlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlnlab.checks import ConfigError, scale_bounds
from dlnlab.data import check_xy, load, synthetic, worked_example
from dlnlab.train import build
from tests.conftest import compose_cfg

REPO = Path(__file__).resolve().parent.parent


def test_synthetic_is_a_sparse_linear_model():
    X, y = synthetic(n=30, d=50, k=4, noise=0.0, seed=3)
    assert X.shape == (30, 50) and y.shape == (30,)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)  # y lies in the span of 4 columns
    assert np.linalg.matrix_rank(np.column_stack([X[:, np.argsort(-np.abs(X.T @ y))[:30]]])) == 30
    X2, y2 = synthetic(n=30, d=50, k=4, noise=0.0, seed=3)
    np.testing.assert_array_equal(y, y2)


def test_correlated_features_have_toeplitz_covariance():
    X, _ = synthetic(n=20000, d=4, k=1, features="correlated", rho=0.6, seed=0)
    cov = X.T @ X / len(X)
    np.testing.assert_allclose(cov[0, 1], 0.6, atol=0.03)
    np.testing.assert_allclose(cov[0, 2], 0.36, atol=0.03)


def test_files_round_trip(tmp_path):
    X, y = synthetic(n=5, d=3, seed=1)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,y",
               comments="")
    for name in ("d.npz", "d.csv"):
        X2, y2 = load(str(tmp_path / name))
        np.testing.assert_allclose(X2, X, rtol=1e-15)
        np.testing.assert_allclose(y2, y, rtol=1e-15)


def test_worked_example_is_the_published_one():
    X, y = worked_example()
    assert X.tolist() == [[1, 0.5, 0.7, 0], [0.5, 1, 0.1, 0.7]] and y.tolist() == [1, 0]


@pytest.mark.parametrize("name, content, message", [
    ("missing.npz", None, "no such file"),
    ("a.txt", "1,2\n", "unknown file type '.txt'"),
    ("g.npz", "garbage", "is not a .npz archive"),
    ("nan.csv", "1,2,3\n4,nan,6\n",
     "X has 1 NaN, inf or non-numeric value(s), the first at index (1, 1)"),
    ("inf.csv", "1,2,inf\n4,5,6\n", "y has 1 NaN"),
    ("text.csv", "a,b\nx,1\n", "line 2, column 1 is 'x', not a number: write it as a number"),
    ("one.csv", "1\n2\n", "at least one row and two columns"),
    ("empty.csv", "a,b,y\n", "at least one row and two columns"),
    ("ragged.csv", "1,2,3\n4,5\n", "not a rectangular CSV"),
])
def test_bad_files_get_one_clear_error(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=".*".join(map(_escape, message.split(".*")))):
        load(str(tmp_path / name))


def _escape(text):
    import re
    return re.escape(text)


def test_bad_npz_arrays(tmp_path):
    np.savez(tmp_path / "k.npz", A=np.ones((2, 2)))
    with pytest.raises(ConfigError, match=r"holds arrays \['A'\]"):
        load(str(tmp_path / "k.npz"))
    np.savez(tmp_path / "m.npz", X=np.ones((3, 2)), y=np.ones(4))
    with pytest.raises(ConfigError, match="X has 3 rows but y has 4"):
        load(str(tmp_path / "m.npz"))


def test_check_xy_rejects_wrong_dimensions():
    with pytest.raises(ConfigError, match="X must be 2-D"):
        check_xy(np.ones(3), np.ones(3))


def refused(f, *args, **kwargs) -> str:
    """The message of the ConfigError that f(*args, **kwargs) raises: one line, no traceback."""
    with pytest.raises(ConfigError) as info:
        f(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def write(path: Path, content) -> str:
    """Write bytes as they are, text without newline translation; return the path as a string."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, newline="")
    return str(path)


X3, Y3 = np.arange(1.0, 7.0).reshape(3, 2), np.arange(1.0, 4.0)


# 1. Complex data


def test_complex_data_is_refused_unless_its_imaginary_part_is_zero(tmp_path):
    np.savez(tmp_path / "c.npz", X=X3 + 1j, y=Y3)
    assert refused(load, str(tmp_path / "c.npz")) == (
        f"path={str(tmp_path / 'c.npz')!r}: X is complex (complex128) with 6 non-zero imaginary "
        "part(s), the first X[0, 0] = (1+1j): give real data (X.real or abs(X), whichever is "
        "meant)")
    y = Y3.astype(complex)
    y[2] += 0.5j
    np.savez(tmp_path / "cy.npz", X=X3, y=y)
    assert ("y is complex (complex128) with 1 non-zero imaginary part(s), the first y[2] = "
            "(3+0.5j)") in refused(load, str(tmp_path / "cy.npz"))
    np.savez(tmp_path / "real.npz", X=X3 + 0j, y=Y3 + 0j)  # a zero imaginary part loses nothing
    X, y = load(str(tmp_path / "real.npz"))
    assert X.dtype == y.dtype == np.float64
    assert X.tolist() == X3.tolist() and y.tolist() == [1, 2, 3]


# 2. Headers


def test_a_first_row_of_nan_is_data_not_a_header(tmp_path):
    path = write(tmp_path / "nan.csv", "nan,nan,nan\n1,2,3\n4,5,6\n")
    assert refused(load, path) == (f"path={path!r}: X has 2 NaN, inf or non-numeric value(s), the "
                                   "first at index (0, 0): remove or impute them")
    path = write(tmp_path / "na.csv", "NA,NA,NA\n1,2,3\n")  # R's missing values are not names
    assert refused(load, path) == (f"path={path!r}: line 1, column 1 is 'NA', a missing value: "
                                   "impute it or drop the row")
    path = write(tmp_path / "mixed.csv", "x1,2,y\n1,2,3\n")  # a header is names only
    assert refused(load, path) == (f"path={path!r}: line 1, column 1 is 'x1', not a number: a "
                                   "header is dropped only if every field in it is a name")


def test_headers_that_are_dropped(tmp_path):
    for name, content in [("plain.csv", "x1,x2,y\n1,2,3\n4,5,6\n"),
                          ("quoted.csv", '"x1","x2","y"\n"1","2","3"\n4,5,6\n'),
                          ("comment.csv", "# x1,x2,y\n1,2,3\n4,5,6\n")]:  # np.savetxt's default
        X, y = load(write(tmp_path / name, content))
        assert X.tolist() == [[1, 2], [4, 5]] and y.tolist() == [3, 6], name


def test_a_pandas_index_column_is_refused(tmp_path):
    path = write(tmp_path / "pd.csv", ",x1,y\n0,1.5,3\n1,2.5,4\n")
    assert refused(load, path) == (f"path={path!r}: the header's first name is empty, as pandas "
                                   "writes for its index, which would become a feature: save with "
                                   "df.to_csv(path, index=False)")


# 3. Files


def test_a_directory_is_named_as_such(tmp_path):
    (tmp_path / "d.npz").mkdir()
    for path in (tmp_path, tmp_path / "d.npz"):
        assert refused(load, str(path)) == (f"path={str(path)!r} is a directory: give the data "
                                            "file in it (data.path=/path/to/data.npz or .csv)")


def _deny(monkeypatch, path: Path, what: str) -> None:
    """Make the OS refuse `what` ('open' or 'stat') on `path` with EACCES. chmod does it for a
    normal user; root reads anyway, so there the same PermissionError comes from a stand-in."""
    try:
        path.open("rb").close() if what == "open" else path.stat()
    except PermissionError:
        return  # the OS refuses by itself
    denied = PermissionError(13, "Permission denied", str(path))
    if what == "open":
        real_open = builtins.open

        def fake_open(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path):
                raise denied
            return real_open(file, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
    else:
        real_stat = pathlib.Path.stat

        def fake_stat(self, *args, **kwargs):
            if str(self) == str(path):
                raise denied
            return real_stat(self, *args, **kwargs)
        monkeypatch.setattr(pathlib.Path, "stat", fake_stat)


@pytest.mark.parametrize("name", ["d.npz", "d.csv"])
def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch, name):
    path = tmp_path / name
    np.savez(path, X=X3, y=Y3) if name.endswith(".npz") else path.write_text("1,2\n3,4\n")
    path.chmod(0)
    try:
        _deny(monkeypatch, path, "open")
        assert refused(load, str(path)) == (f"path={str(path)!r}: permission denied: make the "
                                            "file readable by this user (e.g. chmod u+r)")
    finally:
        path.chmod(0o600)


def test_an_unsearchable_folder_says_permission_denied(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "d.csv"
    path.write_text("1,2\n3,4\n")
    folder.chmod(0)
    try:
        _deny(monkeypatch, path, "stat")
        assert refused(load, str(path)) == (f"path={str(path)!r}: permission denied on a folder "
                                            "of the path (it must be searchable: chmod +x it)")
    finally:
        folder.chmod(0o700)


def _damage(raw: bytes, member: bytes, offset: int) -> bytes:
    i = raw.index(member) + offset
    return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]


def test_npz_object_damaged_and_truncated_archives(tmp_path):
    np.savez(tmp_path / "obj.npz", X=np.array([[1, "a"]], dtype=object), y=np.ones(1))
    assert refused(load, str(tmp_path / "obj.npz")) == (
        f"path={str(tmp_path / 'obj.npz')!r}: X is an object array (Python objects, which are not "
        "unpickled, for safety): save numbers, e.g. np.savez(path, X=X.astype(float), "
        "y=y.astype(float))")
    again = "write the file again with np.savez(path, X=X, y=y)"
    np.savez(tmp_path / "good.npz", X=np.ones((40, 30)), y=np.ones(40))
    raw = (tmp_path / "good.npz").read_bytes()
    path = write(tmp_path / "crc.npz", _damage(raw, b"X.npy", 300))
    assert refused(load, path) == (f"path={path!r}: X.npy in the archive is damaged or truncated "
                                   f"(Bad CRC-32 for file 'X.npy'): {again}")
    np.savez_compressed(tmp_path / "z.npz", X=np.random.default_rng(0).random((40, 30)),
                        y=np.ones(40))
    path = write(tmp_path / "zdamaged.npz", _damage((tmp_path / "z.npz").read_bytes(), b"X.npy",
                                                    300))
    assert f"path={path!r}: X.npy in the archive is damaged or truncated (" in refused(load, path)
    path = write(tmp_path / "cut.npz", raw[: len(raw) // 2])
    assert refused(load, path) == (f"path={path!r} is a damaged or truncated .npz archive (its "
                                   f"zip directory is missing): {again}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:  # a zip, but not of .npy arrays
        z.writestr("X.npy", b"not an array")
        z.writestr("y.npy", b"nor this")
    path = write(tmp_path / "zip.npz", buffer.getvalue())
    assert refused(load, path) == f"path={path!r}: X in the archive is not a .npy array: {again}"


@pytest.mark.parametrize("name, content, shown, decimals", [
    ("semicolons.csv", "1;2;3\n4;5;6\n", "';'", False),
    ("tabs.csv", "x1\tx2\ty\n1\t2\t3\n", "tabs", False),
    ("spaces.csv", "1 2 3\n4 5 6\n", "spaces", False),
    ("decimal_commas.csv", "1,5;2,5;3\n4,5;5,5;6\n", "';'", True),
    ("header_commas.csv", "x1,x2,y\n1;2;3\n", "';'", False),
])
def test_another_delimiter_is_named(tmp_path, name, content, shown, decimals):
    path = write(tmp_path / name, content)
    assert refused(load, path) == (f"path={path!r}: the CSV seems to use {shown} as delimiter: use "
                                   "commas" + (" between values and '.' for decimals" * decimals))


def test_ragged_rows_name_their_lines(tmp_path):
    path = write(tmp_path / "short.csv", "1,2,3\n\n4,5\n")
    assert refused(load, path) == (f"path={path!r}: not a rectangular CSV: line 3 has 2 values but "
                                   "line 1 has 3: every row needs the same columns (features, then "
                                   "y)")
    path = write(tmp_path / "long.csv", "x1,y\n1,2\n3,4,5\n")
    assert "line 3 has 3 values but the header (line 1) has 2" in refused(load, path)


# 4. Scale


def test_scale_bounds_keep_the_gram_matrix_and_the_loss_finite():
    n, d = 20, 40
    lo, hi = scale_bounds(n, d)
    big, tiny = np.finfo(np.float64).max, np.finfo(np.float64).tiny
    X, y = np.full((n, d), 0.999 * hi), np.full(n, -0.999 * hi)  # every entry at the bound
    check_xy(X, y)
    quantities = [X.T @ X, X.T @ y, y @ y, np.linalg.norm(X, 2) ** 2]  # before the division by n
    assert all(np.all(np.isfinite(q)) and np.max(np.abs(q)) <= big / 1e8 for q in quantities)
    # the 1e8 margin is all there is: ‖X‖₂² (summary.py's curvature, before the division by n)
    with np.errstate(over="ignore"):
        assert np.linalg.norm(X * 1.01e4, 2) ** 2 == np.inf
    X, y = np.full((n, d), 1.001 * lo), np.full(n, 1.001 * lo)  # the largest entries at the bound
    check_xy(X, y)
    assert y @ y / (2 * n) >= tiny * 1e32 and np.diag(X.T @ X / n).max() >= tiny * 1e32


@pytest.mark.parametrize("name, index", [("X", (3, 5)), ("y", (7,))])
def test_entries_just_outside_the_scale_bounds_are_refused(name, index):
    n, d = 20, 40
    lo, hi = scale_bounds(n, d)
    X, y = synthetic(n=n, d=d, seed=0)
    data = {"X": X.copy(), "y": y.copy()}
    data[name][index] = 0.999 * hi
    check_xy(data["X"], data["y"])
    data[name][index] = -1.001 * hi
    shown = ", ".join(map(str, index))
    assert refused(check_xy, data["X"], data["y"], "data") == (
        f"data: {name}[{shown}] = {-1.001 * hi:.3g} is too large: for n=20, d=40 every |X|, |y| "
        f"must be ≤ {hi:.3g} so that XᵀX/n, Xᵀy/n and ‖y‖²/2n stay finite in float64: rescale the "
        f"data, e.g. divide {name} alone by 1e+149 (which "
        f"{'multiplies' if name == 'X' else 'divides'} β by it)")
    data = {"X": X * (1.001 * lo / np.abs(X).max()), "y": y * (1.001 * lo / np.abs(y).max())}
    check_xy(data["X"], data["y"])
    data[name] *= 0.998
    assert f"the largest |{name}| is {0.998 * 1.001 * lo:.3g}" in refused(check_xy, data["X"],
                                                                            data["y"])


def test_tiny_and_zero_data(tmp_path):
    np.savez(tmp_path / "tiny.npz", X=X3 * 1e-200, y=Y3 * 1e-200)
    path = str(tmp_path / "tiny.npz")
    lo = scale_bounds(3, 2)[0]
    assert refused(load, path) == (
        f"path={path!r}: the largest |X| is 6e-200 (at X[2, 1]), too small: for n=3 it must be ≥ "
        f"{lo:.3g} so that XᵀX/n and L(0) = ‖y‖²/2n stay 1e32 above float64's smallest normal "
        "number: rescale the data, e.g. multiply X and y by 1e+200 (the same factor leaves β "
        "unchanged)")
    np.savez(tmp_path / "y0.npz", X=X3, y=0 * Y3)
    assert refused(load, str(tmp_path / "y0.npz")).endswith(
        ": y is all zero: L(0) = 0 and β = 0 already fits, nothing to learn: give non-zero labels")
    np.savez(tmp_path / "x0.npz", X=0 * X3, y=Y3)
    assert refused(load, str(tmp_path / "x0.npz")).endswith(
        ": X is all zero: the gradient Xᵀ(Xβ − y)/n is 0 and the loss cannot move: give non-zero "
        "features")
    X, y = check_xy(X3, 0 * Y3)  # the theory's own degenerate case stays allowed there
    assert not y.any()


def test_synthetic_refuses_overflowing_noise_and_negative_seeds():
    hi = scale_bounds(20, 40)[1]
    assert refused(synthetic, noise=1e300) == (
        f"noise=1e+300 is too large: y would pass {hi:.3g}, the largest entry for which XᵀX/n and "
        f"‖y‖²/2n stay finite in float64 at n=20, d=40: use noise ≤ {hi / 10:.3g} (noise=1 is "
        "already the signal's size)")
    synthetic(noise=hi / 10)  # the bound itself is fine
    assert refused(synthetic, seed=-1) == "seed=-1 must be an integer ≥ 0 (e.g. seed=0)"
    assert refused(synthetic, k=0, noise=0.0) == (
        "k=0 with noise=0.0 makes y = 0, nothing to learn: use k ≥ 1 (the non-zeros of the ground "
        "truth) or noise > 0 (e.g. noise=1.0)")
    assert refused(synthetic, k=0, noise=1e-300).endswith(": use noise ≥ 1e-134 or k ≥ 1")
    for bad in [dict(k=2.5), dict(k=True), dict(seed=1.5), dict(noise="x"), dict(rho="x")]:
        key, value = next(iter(bad.items()))
        message = refused(synthetic, **bad)
        assert message.startswith(f"{key}={value!r}") and " must be " in message


def test_the_config_keys_are_named():
    cfg = compose_cfg("data.noise=1e300", "data.seed=-1")
    assert refused(build, cfg.data, "data").startswith("data.noise=1e+300 is too large")
    cfg = compose_cfg("data.seed=-1")
    assert refused(build, cfg.data, "data") == "data.seed=-1 must be an integer ≥ 0 (e.g. seed=0)"


@pytest.mark.slow
def test_the_cli_prints_one_line_and_exits_2(tmp_path):
    path = write(tmp_path / "semi.csv", "1;2;3\n4;5;6\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "dlnlab.cli", "data=file", f"data.path={path}",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 2
    assert proc.stderr == (f"dlnlab-train: error: data.path={path!r}: the CSV seems to use ';' as "
                           "delimiter: use commas\n")


# 5. Everything else a file can get wrong


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "is empty (0 bytes): write the data into it"),
    ("empty.npz", b"", "is empty (0 bytes): write the data into it"),
    ("blank.csv", "\n\n# a comment\n", "at least one row and two columns (features, then y): it "
                                       "has only blank or '#' comment lines"),
    ("trailing.csv", "1,2,3,\r\n4,5,6,\r\n", "every row ends with a comma (an empty last column): "
                                             "remove the trailing commas"),
    ("hole.csv", "1,2,3\n4,,6\n", "line 2, column 2 is empty: fill it in or drop the row"),
    ("nul.csv", b"1,2,3\n4,\x005,6\n", "line 2 holds a NUL byte, so this is not a text CSV"),
    ("utf16.csv", "1,2,3\n".encode("utf-16"), "not UTF-8 text (byte 0xff at offset 0) (a UTF-16 "
                                              "file): save the CSV as UTF-8"),
    ("latin1.csv", "café,y\n1,2\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 3)"),
    ("a.npy", None, "is a .npy file, which holds one array: save X and y together with "
                    "np.savez(path, X=X, y=y) (a .npz)"),
    ("npy.npz", None, "is a .npy file (one array), not a .npz"),
])
def test_more_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        with open(path, "wb") as f:  # np.save to a handle keeps the name as it is
            np.save(f, X3)
    else:
        write(path, content)
    assert message in refused(load, str(path))


@pytest.mark.parametrize("X, y, message", [
    (np.arange(3.0), Y3, "X must be 2-D (n samples × d features), got shape (3,): for one feature "
                         "use X.reshape(-1, 1)"),
    (X3, np.ones((3, 2)), "y must be 1-D (n,) or (n, 1), one label per row of X, got shape (3, 2): "
                          "y with 2 columns is several targets: train on one, e.g. y[:, 0]"),
    (X3, Y3[None, :], "y must be 1-D (n,) or (n, 1), one label per row of X, got shape (1, 3): if "
                      "it is one row of labels, use y.ravel()"),
    (X3.astype(str), Y3, "X holds <U32 values, not numbers: give X and y as float arrays (e.g. "
                         "X.astype(float) if they are numbers as text)"),
    (X3, Y3.astype("datetime64[D]"), "y holds datetime64[D] values, not numbers: give X and y as "
                                     "float arrays (e.g. y.astype(float) if they are numbers as "
                                     "text)"),
    (np.ones((3, 0)), Y3, "the data is empty (X has shape (3, 0)): give at least one sample and "
                          "one feature"),
])
def test_bad_arrays(tmp_path, X, y, message):
    np.savez(tmp_path / "a.npz", X=X, y=y)
    assert refused(load, str(tmp_path / "a.npz")) == f"path={str(tmp_path / 'a.npz')!r}: {message}"


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="long double is float64 on this platform")
def test_long_doubles_beyond_float64_are_named():
    X = np.ones((2, 2), dtype=np.longdouble)
    X[1, 0] = np.longdouble("1e400")
    assert refused(check_xy, X, np.ones(2)) == (
        f"data: X[1, 0] = 1.e+400 ({X.dtype}) is beyond float64's range: rescale the data")


def test_paths_that_are_not_files(tmp_path, monkeypatch):
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "nowhere.csv")
    assert refused(load, str(link)) == (f"path={str(link)!r} is a broken symbolic link (to "
                                        f"{str(tmp_path / 'nowhere.csv')!r}): give the data file "
                                        "itself")
    path = write(tmp_path / "f.csv", "1,2\n")
    assert refused(load, path + "/x.csv") == (f"path={path + '/x.csv'!r}: no such file ({path} is "
                                              "a file, not a folder)")
    if os.path.exists("/dev/null"):
        assert refused(load, "/dev/null").endswith("is not a regular file (a device, pipe or "
                                                   "socket): give a .npz or .csv file")
    for bad in ("", None, 3):
        assert refused(load, bad) == (f"path={bad!r} is not a file path: give "
                                      "data.path=/path/to/data.npz or .csv")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert refused(load, "~/missing.npz") == (f"path='~/missing.npz': no such file "
                                              f"({tmp_path / 'missing.npz'}): give "
                                              "data.path=/path/to/data.npz or .csv")


def test_what_is_accepted(tmp_path, monkeypatch):
    expected = ([[1, 2], [4, 5]], [3, 6])
    csvs = {"bom.csv": "\ufeff1,2,3\n4,5,6\n", "bom_header.csv": "\ufeffx1,x2,y\n1,2,3\n4,5,6\n",
            "crlf.csv": "x1,x2,y\r\n1,2,3\r\n4,5,6\r\n", "cr.csv": "1,2,3\r4,5,6\r",
            "spaced.csv": " x1 , x2 , y \n 1 , 2 , 3 \n4,5,6\n", "UPPER.CSV": "1,2,3\n4,5,6\n",
            "blank_lines.csv": "\n1,2,3\n\n4,5,6\n\n"}
    for name, content in csvs.items():
        X, y = load(write(tmp_path / name, content))
        assert (X.tolist(), y.tolist()) == expected and X.flags.c_contiguous, name
    X, y = load(write(tmp_path / "one.csv", "1,2,3\n"))  # n = 1
    assert X.shape == (1, 2) and y.tolist() == [3]
    arrays = {"int": (X3.astype(int), Y3.astype(int)), "bool": (X3 > 2, Y3 > 1),
              "column_y": (X3, Y3[:, None]), "float16": (X3.astype(np.float16), Y3)}
    for name, (Xa, ya) in arrays.items():
        np.savez(tmp_path / f"{name}.npz", X=Xa, y=ya, extra=np.ones(7))
        X, y = load(str(tmp_path / f"{name}.npz"))
        assert X.dtype == y.dtype == np.float64 and X.shape == (3, 2) and y.shape == (3,), name
        assert X.tolist() == np.asarray(Xa, float).tolist(), name
    os.rename(tmp_path / "int.npz", tmp_path / "INT.NPZ")
    assert load(str(tmp_path / "INT.NPZ"))[0].tolist() == X3.tolist()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load("~/bom.csv")[1].tolist() == [3, 6]
