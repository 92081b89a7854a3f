"""Benchmark: dlnlab's training path against a bare PyTorch loop and the two-mat-vec floor, in one
process, at the α and step sizes papers use; and the whole process as a user times it.

    python scripts/bench.py [--sizes 20x40 100x1000 1000x10000] [--repeats 3]
        [--cases 1e-2:1e-2 1e-3:1e-3 1e-10:1e-3] [--replicas 8 64] [--device cpu|cuda]
        [--json out.json] [--quick] [--no-startup]

For each size and each case α:lr (GD; SGD with batches of n/10 at the last case), it measures the
steps/s of
  floor   the two matrix-vector products a step needs, alone;
  bare    a bare PyTorch loop with the hand-written u ⊙ v gradient at that α and step,
          preallocated buffers, no per-step loss record (one thread below n·d = 1e6, all cores
          above);
  dlnlab  Trainer.fit through dlnlab.train with the default callbacks and TensorBoard logging;
  quiet   the same with no callbacks and no logger;
and the callbacks' share of a run, as dlnlab against quiet and as their own time, timed inside the
dlnlab runs by Lightning's SimpleProfiler. dlnlab's steps/s is the slope between runs of two
lengths: start-up and the theory are fixed costs, reported apart; the figures, drawn once a run,
are left out of these runs and counted in the start-up rows. The runs are interleaved (each repeat
times every job in turn) so that a slow spell of this shared machine falls on all of a repeat's
jobs alike, and ratios are taken within a repeat, then their median (with the range).

At the last case: replica stacks (a seed sweep of E networks) in network-steps/s against one
network; a user model given only beta() (autograd) against the same model in a bare autograd loop;
the peak memory of a run over the size of X. Start-up, in fresh processes (median of 5):
`dlnlab-train --help`, a configuration error, `experiment=fig1` end to end (figures included), and
the import of Lightning alone (its floor).
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlnlab import config
from dlnlab.config import CONF_DIR
from dlnlab.data import synthetic
from dlnlab.models import DiagonalNetwork
from dlnlab.train import train


class AutogradUV(DiagonalNetwork):
    """β = u ⊙ v defined by beta() alone: trains through autograd."""

    limit = "signed"

    def __init__(self, d: int, alpha: float = 1e-10):
        super().__init__()
        self.alpha = alpha
        self.u = torch.nn.Parameter(torch.full((d,), math.sqrt(2) * alpha, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.full((d,), 1e-3, dtype=torch.float64))

    def beta(self):
        return self.u * self.v

    def time_scale(self) -> float:
        return math.log(1 / self.alpha)


def median_rate(fn, steps: int, repeats: int) -> tuple[float, list[float]]:
    """Median steps/s of fn(steps) over repeats (after one warm-up), and every repeat's."""
    fn(min(steps, 50))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(steps)
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates), rates


def _sync(X):
    if X.device.type == "cuda":
        torch.cuda.synchronize()


def floor_loop(X, y):
    def run(steps):
        n, d = X.shape
        b, r, g = X.new_zeros(d), X.new_empty(n), X.new_empty(d)
        for _ in range(steps):
            torch.mv(X, b, out=r)
            torch.mv(X.T, r, out=g)
        _sync(X)
    return run


def bare_loop(X, y, batch, alpha, lr):
    """The hand-written u ⊙ v GD/SGD loop a careful user would write."""
    def run(steps):
        n, d = X.shape
        u = X.new_full((d,), math.sqrt(2) * alpha)
        v = torch.zeros_like(u)
        beta, g, tmp = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        r = X.new_empty(n)
        gen = torch.Generator(device=X.device).manual_seed(0)
        for _ in range(steps):
            torch.mul(u, v, out=beta)
            torch.addmv(y, X, beta, beta=-1, out=r)
            if batch is None:
                torch.mv(X.T, r, out=g)
                g.mul_(lr / n)
            else:
                idx = torch.randint(n, (batch,), generator=gen, device=X.device)
                torch.mv(X[idx].T, r[idx], out=g)
                g.mul_(lr / batch)
            torch.mul(g, v, out=tmp)
            v.addcmul_(g, u, value=-1)
            u.sub_(tmp)
        _sync(X)
    return run


def bare_autograd_loop(X, y, lr):
    def run(steps):
        model = AutogradUV(X.shape[1]).to(X.device)
        params = list(model.parameters())
        for _ in range(steps):
            r = X @ model.beta() - y
            loss = r.dot(r) / (2 * len(y))
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(lr * g)
        _sync(X)
    return run


def dlnlab_cfg(n, d, batch, device, quiet, out, steps, alpha, lr, model=None, replicas=None):
    overrides = [
        f"data.n={n}",
        f"data.d={d}",
        "data.k=5",
        f"model.alpha={alpha}",
        f"optim.lr={lr}",
        "run.t_max=1e9",
        f"trainer.max_steps={steps}",
        "trainer.enable_progress_bar=false",
        f"trainer.accelerator={device}",
        f"run.output_dir={out}",
        "trainer.profiler=simple",
    ]
    if batch is not None:
        overrides += ["optim=sgd", f"optim.batch_size={batch}"]
    if quiet:
        overrides += ["callbacks=none", "~logger"]
    else:  # figures are drawn once a run (the fig1 start-up row includes them), not per step
        overrides += ["~callbacks.figures", "callbacks.effective_alpha.figure=never"]
    if replicas:  # a seed sweep: E networks of random initialisation shapes, the same clock
        overrides += [
            "model.shape=random",
            f"model.shape_seed=[{','.join(map(str, range(replicas)))}]",
        ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    if model is not None:
        cfg.model = OmegaConf.create({"_target_": model, "alpha": alpha})
    return cfg


def dlnlab_rates(jobs: dict, repeats: int) -> dict:
    """{name: (steps/s per repeat, fixed cost in s, callbacks' timed share per repeat)} of dlnlab
    runs given as {name: dlnlab_cfg's keyword arguments}, interleaved (see the module docstring)."""
    def fit_time(job: dict, steps: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            summary = train(dlnlab_cfg(out=out, **{**job, "steps": steps}))
        callbacks = sum(
            t for hook, t in summary["profile_s"].items() if hook.startswith("[Callback]")
        )
        return summary["wall_time_s"], callbacks
    for job in jobs.values():
        fit_time(job, 50)
    times = {name: ([], []) for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            times[name][0].append(fit_time(job, job["steps"]))
            times[name][1].append(fit_time(job, 2 * job["steps"]))
    rates = {}
    for name, job in jobs.items():
        (short, short_cb), (long, long_cb) = (zip(*runs) for runs in times[name])
        per_step = [max(b - a, 1e-12) / job["steps"] for a, b in zip(short, long)]
        share = [(b - a) / (p * job["steps"]) for a, b, p in zip(short_cb, long_cb, per_step)]
        fixed = statistics.median(short) - job["steps"] * statistics.median(per_step)
        rates[name] = ([1 / p for p in per_step], fixed, share)
    return rates


def ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b)]


def spread(values: list[float], fmt: str = ".2f", suffix: str = "x") -> str:
    """The median of a repeat's values and their range."""
    return (f"{statistics.median(values):{fmt}}{suffix} ({min(values):{fmt}}–{max(values):{fmt}})")


def peak_memory_ratio(n, d, device, alpha, lr) -> float:
    """Peak memory added by a dlnlab run (GD, default callbacks), over the size of X: on the CPU the
    resident set of a fresh process, on CUDA the allocator's peak."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with tempfile.TemporaryDirectory() as out:
            train(dlnlab_cfg(n, d, None, "cuda", False, out, 100, alpha, lr))
        return (torch.cuda.max_memory_allocated() - before) / (n * d * 8)
    if device != "cpu" or not Path("/proc/self/status").exists():
        return float("nan")
    probe = f"""
import tempfile
from pathlib import Path
from dlnlab import config
from dlnlab.train import train
import scripts.bench as bench
status = Path("/proc/self/status")
def rss(key):
    line = next(x for x in status.read_text().splitlines() if x.startswith(key))
    return int(line.split()[1]) * 1024
config.register()
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = rss("VmRSS:")
with tempfile.TemporaryDirectory() as out:
    train(bench.dlnlab_cfg({n}, {d}, None, "cpu", False, out, 100, {alpha}, {lr}))
print((rss("VmHWM:") - before) / ({n} * {d} * 8))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def startup(repeats: int = 5) -> dict:
    """Whole-process seconds (median and range of `repeats` fresh processes)."""
    script = str(Path(sys.executable).parent / "dlnlab-train")
    commands = {
        "import lightning.pytorch (the floor)": [sys.executable, "-c", "import lightning.pytorch"],
        "dlnlab-train --help": [script, "--help"],
        "dlnlab-train model.alpha=2 (an error)": [script, "model.alpha=2"],
        "dlnlab-train experiment=fig1": [
            script,
            "experiment=fig1",
            "trainer.enable_progress_bar=false",
        ],
    }
    times = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(repeats):  # interleaved, as the dlnlab runs
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, cwd=cwd, capture_output=True)
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["20x40", "100x1000", "1000x10000"])
    parser.add_argument("--cases", nargs="+", default=["1e-2:1e-2", "1e-3:1e-3", "1e-10:1e-3"],
                        help="α:lr pairs (the last also gets SGD, replicas, autograd)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", nargs="*", type=int, default=[8, 64], help="stack sizes E")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier ratios)")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    args = parser.parse_args()
    config.register()
    scale = 0.25 if args.quick else 1.0
    steps_for = {"20x40": 20000, "100x1000": 4000, "1000x10000": 200}  # loops timed directly
    slope_for = {
        "20x40": 2_400_000,
        "100x1000": 40_000,
        "1000x10000": 200,
    }  # dlnlab: above the noise
    results = []
    for size in args.sizes:
        n, d = map(int, size.split("x"))
        steps = max(50, int(steps_for.get(size, 1000) * scale))
        slope = max(100, int(slope_for.get(size, 1000) * scale))
        torch.set_num_threads(1 if n * d < 1_000_000 else torch.get_num_threads())
        X, y = (torch.from_numpy(a).to(args.device) for a in synthetic(n=n, d=d, k=5, seed=0))
        floor = median_rate(floor_loop(X, y), steps, args.repeats)[0]
        for c, case in enumerate(args.cases):
            alpha, lr = map(float, case.split(":"))
            last = c == len(args.cases) - 1
            for method, batch in (("gd", None), ("sgd", max(1, n // 10)))[:2 if last else 1]:
                row = {
                    "size": size,
                    "alpha": alpha,
                    "lr": lr,
                    "method": method,
                    "device": args.device,
                    "floor": floor,
                }
                row["bare"] = median_rate(bare_loop(X, y, batch, alpha, lr), steps, args.repeats)[0]
                base = {
                    "n": n,
                    "d": d,
                    "batch": batch,
                    "device": args.device,
                    "alpha": alpha,
                    "lr": lr,
                }
                jobs = {"dlnlab": {**base, "quiet": False, "steps": slope},
                        "quiet": {**base, "quiet": True, "steps": slope}}
                if last and method == "gd":
                    jobs |= {
                        E: {**base, "quiet": False, "steps": max(20, slope * 8 // E), "replicas": E}
                        for E in args.replicas
                    }
                rates = dlnlab_rates(jobs, args.repeats)
                (dlnlab, row["dlnlab_fixed_s"], timed), (quiet, _, _) = (
                    rates["dlnlab"],
                    rates["quiet"],
                )
                row["dlnlab"], row["quiet"] = statistics.median(dlnlab), statistics.median(quiet)
                row["over_bare"] = [r / row["bare"] for r in dlnlab]
                row["logging_share"] = [1 - r for r in ratios(dlnlab, quiet)]
                row["callbacks_share_timed"] = timed
                results.append(row)
                print(
                    f"{size:>10} α={alpha:<6g} lr={lr:<6g} {method:>3}: floor {floor:9.0f}/s  bare "
                    f"{row['bare']:9.0f}/s  dlnlab {row['dlnlab']:9.0f}/s | dlnlab/bare "
                    f"{spread(row['over_bare'])}  callbacks' share "
                    f"{spread(row['logging_share'], '.1%', '')} on/off, "
                    f"{spread(timed, '.1%', '')} timed | fixed {row['dlnlab_fixed_s']:.2f} s",
                    flush=True,
                )
                if not (last and method == "gd"):
                    continue
                for E in args.replicas:
                    stack = [E * rate for rate in rates[E][0]]
                    over = ratios(stack, dlnlab)
                    results.append(
                        {
                            "size": size,
                            "alpha": alpha,
                            "lr": lr,
                            "replicas": E,
                            "network_steps": statistics.median(stack),
                            "over_one_network": over,
                        }
                    )
                    print(
                        f"{size:>10} {E:3d} replicas: {statistics.median(stack):10.0f} "
                        f"network-steps/s | over one network {spread(over)}",
                        flush=True,
                    )
                autograd_bare = median_rate(
                    bare_autograd_loop(X, y, lr), max(20, steps // 4), args.repeats
                )
                autograd = {
                    "model": f"{AutogradUV.__module__}.AutogradUV",
                    "quiet": True,
                    "steps": max(20, steps // 4),
                }
                mine = dlnlab_rates({"autograd": {**base, **autograd}}, args.repeats)["autograd"][0]
                results.append({"size": size, "autograd_over_bare": ratios(mine, autograd_bare[1])})
                print(
                    f"{size:>10} autograd model: dlnlab/bare "
                    f"{spread(ratios(mine, autograd_bare[1]))}",
                    flush=True,
                )
    largest = max(args.sizes, key=lambda s: math.prod(map(int, s.split("x"))))
    n, d = map(int, largest.split("x"))
    alpha, lr = map(float, args.cases[-1].split(":"))
    memory = peak_memory_ratio(n, d, args.device, alpha, lr)
    print(f"peak memory of a dlnlab run at {largest}: {memory:.2f}x the size of X")
    report = {"rows": results, "peak_memory_over_data": memory}
    if not args.no_startup:
        times = startup()
        report["startup_s"] = times
        for name, values in times.items():
            print(f"{name:>40}: {spread(values, '.2f', ' s')}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
