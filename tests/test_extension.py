"""A user's own modules, run by the console scripts from the directory that holds them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(sys.executable).parent


def only_run(directory: Path, pattern: str = "outputs/runs/*/summary.json") -> dict:
    (summary,) = directory.glob(pattern)
    return json.loads(summary.read_text())


@pytest.mark.slow
def test_dlnlab_saddles_imports_data_from_its_directory(tmp_path):
    """A data `_target_` of the user's, in the directory dlnlab-saddles runs from."""
    (tmp_path / "mydata.py").write_text("import numpy as np\n\n\ndef diagonal():\n"
                                        "    return np.eye(3), np.array([3.0, 2.0, 1.0])\n")
    (tmp_path / "myconf" / "data").mkdir(parents=True)
    (tmp_path / "myconf" / "data" / "diagonal.yaml").write_text("_target_: mydata.diagonal\n")
    proc = subprocess.run([str(SCRIPTS / "dlnlab-saddles"), "--config-dir", "myconf",
                           "data=diagonal"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = only_run(tmp_path, "outputs/saddles/*/saddles.json")
    assert (table["n"], table["d"]) == (3, 3)
    # X = I (n = 3): coordinate i enters alone when its dual t·y_i/n reaches 1, at t = n/y_i
    assert [row["entering"] for row in table["saddles"]] == [[], [0], [1], [2]]
    assert [row["t"] for row in table["saddles"]] == pytest.approx([0, 1, 1.5, 3])
