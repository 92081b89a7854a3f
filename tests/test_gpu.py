"""On a CUDA device (skipped without one): trainer.accelerator=auto trains there, and a run there is
the CPU run up to the order of floating-point sums (cuBLAS sums in another order than the CPU's
BLAS)."""

import math

import numpy as np
import pytest
import torch

from tests.test_replicas import run_in

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FIG1 = ("experiment=fig1", "run.t_max=3.5", "~callbacks.figures")


def assert_close_runs(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] and a["steps"] == b["steps"]
    np.testing.assert_allclose(a["beta"], b["beta"], rtol=1e-6, atol=1e-12)
    for x, y in zip(a["saddles"], b["saddles"], strict=True):
        assert x["support_run"] == y["support_run"]
        if x["t_run"] is not None:
            assert math.isclose(x["t_run"], y["t_run"], rel_tol=1e-4)


def test_auto_accelerator_trains_on_cuda(tmp_path):
    summary = run_in(tmp_path, "data=fixture", "model.alpha=1e-30", "run.t_max=20")
    assert summary["device"].startswith("cuda")
    np.testing.assert_allclose(summary["beta"], [0, 0, 10 / 7, -10 / 49], atol=1e-4)


def test_gd_on_cuda_is_the_cpu_run(tmp_path):
    cuda = run_in(tmp_path / "cuda", *FIG1, "trainer.accelerator=gpu")
    cpu = run_in(tmp_path / "cpu", *FIG1, "trainer.accelerator=cpu")
    assert cuda["device"].startswith("cuda") and cpu["device"] == "cpu"
    assert_close_runs(cuda, cpu)
    assert all(r["support_run"] == r["support_limit"] for r in cuda["saddles"])


def test_replicas_on_cuda_are_the_cpu_replicas(tmp_path):
    alphas = "model.alpha=[1e-10,1e-30,1e-50]"
    cuda = run_in(tmp_path / "cuda", *FIG1, alphas, "trainer.accelerator=gpu")
    cpu = run_in(tmp_path / "cpu", *FIG1, alphas, "trainer.accelerator=cpu")
    for a, b in zip(cuda["replicas"], cpu["replicas"], strict=True):
        assert a["device"].startswith("cuda")
        assert_close_runs(a, b)


def test_sgd_on_cuda_finds_the_saddles(tmp_path):
    summary = run_in(tmp_path, "experiment=sgd", "~callbacks.figures", "trainer.accelerator=gpu")
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")
    assert all(r["support_run"] == r["support_limit"] for r in summary["saddles"][:-1])
