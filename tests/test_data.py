"""Data sources: the generator's properties, file loading, and one clear error for each bad file."""

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
    ("text.csv", "a,b\nx,1\n", "X has 1 NaN"),
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




