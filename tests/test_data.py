"""Data sources: the generator's properties, file loading, and one clear error for each bad file."""

import numpy as np
import pytest

from dlnlab.checks import ConfigError
from dlnlab.data import check_xy, load, synthetic, worked_example


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
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="")
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
    ("nan.csv", "1,2,3\n4,nan,6\n", "X has 1 NaN, inf or non-numeric value(s), the first at index (1, 1)"),
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
