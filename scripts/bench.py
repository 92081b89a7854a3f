"""Benchmark: dlnlab's training path against a bare PyTorch loop and the two-mat-vec floor, in one process.

    python scripts/bench.py [--sizes 20x40 100x1000 1000x10000] [--repeats 3] [--device cpu|cuda] [--json out.json]

For each size (float64) and for GD and SGD it measures steps/s of
  floor     the two matrix-vector products a step needs, alone;
  bare      a bare PyTorch loop with the hand-written u ⊙ v gradient, preallocated buffers;
  dlnlab    Trainer.fit through dlnlab.train with the default callbacks and TensorBoard logging;
  quiet     the same with no callbacks and no logger (so logging's share is dlnlab vs quiet, and, since
            that difference is often within this machine's noise, also the callbacks' time timed inside
            the dlnlab runs by Lightning's SimpleProfiler: trainer.profiler=simple);
and, for GD, a user model given only beta() (autograd) through dlnlab against the same model in a
bare autograd loop; and replica runs (a seed sweep of E = 8 and 64 networks stacked by
dlnlab.replicas): their network-steps/s against one network's steps/s through dlnlab. dlnlab's
per-step cost is the slope between two run lengths, so fixed costs (start-up, the theory at fit
start, figures at the end) are reported apart. Peak memory of the dlnlab path over the data's own
size is measured at the largest size. Medians of --repeats.
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
from dlnlab.data import synthetic
from dlnlab.models import DiagonalNetwork
from dlnlab.config import CONF_DIR
from dlnlab.train import train

ALPHA, LR = 1e-10, 1e-3


class AutogradUV(DiagonalNetwork):
    """β = u ⊙ v defined by beta() alone: trains through autograd."""

    def __init__(self, d: int, alpha: float = ALPHA):
        super().__init__()
        self.alpha = alpha
        self.u = torch.nn.Parameter(torch.full((d,), math.sqrt(2) * alpha, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.full((d,), 1e-3, dtype=torch.float64))

    def beta(self):
        return self.u * self.v

    def time_scale(self) -> float:
        return math.log(1 / self.alpha)


def median_rate(fn, steps: int, repeats: int) -> float:
    """Median steps/s of fn(steps) over repeats (after one warm-up)."""
    fn(min(steps, 50))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(steps)
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def floor_loop(X, y, batch):
    def run(steps):
        n, d = X.shape
        b, r, g = torch.zeros(d, dtype=X.dtype, device=X.device), torch.empty(n, dtype=X.dtype, device=X.device), \
            torch.empty(d, dtype=X.dtype, device=X.device)
        for _ in range(steps):
            torch.mv(X, b, out=r)
            torch.mv(X.T, r, out=g)
        _sync(X)
    return run


def bare_loop(X, y, batch):
    """The hand-written u ⊙ v GD/SGD loop a careful user would write."""
    def run(steps):
        n, d = X.shape
        u = torch.full((d,), math.sqrt(2) * ALPHA, dtype=X.dtype, device=X.device)
        v = torch.zeros_like(u)
        beta, g, tmp = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        r = torch.empty(n, dtype=X.dtype, device=X.device)
        losses = torch.empty(steps, dtype=X.dtype, device=X.device)
        gen = torch.Generator(device=X.device).manual_seed(0)
        for j in range(steps):
            torch.mul(u, v, out=beta)
            torch.addmv(y, X, beta, beta=-1, out=r)
            losses[j] = r.dot(r)
            if batch is None:
                torch.mv(X.T, r, out=g)
                g.mul_(LR / n)
            else:
                idx = torch.randint(n, (batch,), generator=gen, device=X.device)
                torch.mv(X[idx].T, r[idx], out=g)
                g.mul_(LR / batch)
            torch.mul(g, v, out=tmp)
            v.addcmul_(g, u, value=-1)
            u.sub_(tmp)
        _sync(X)
    return run


def bare_autograd_loop(X, y):
    def run(steps):
        model = AutogradUV(X.shape[1]).to(X.device)
        params = list(model.parameters())
        for _ in range(steps):
            r = X @ model.beta() - y
            loss = r.dot(r) / (2 * len(y))
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(LR * g)
        _sync(X)
    return run


def _sync(X):
    if X.device.type == "cuda":
        torch.cuda.synchronize()


def dlnlab_cfg(n, d, batch, device, quiet, out, steps, model=None, replicas=None):
    overrides = [f"data.n={n}", f"data.d={d}", "data.k=5", f"model.alpha={ALPHA}", f"optim.lr={LR}",
                 "run.t_max=1e9", f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false",
                 f"trainer.accelerator={device}", f"run.output_dir={out}", "trainer.profiler=simple"]
    if batch is not None:
        overrides += ["optim=sgd", f"optim.batch_size={batch}"]
    if quiet:
        overrides += ["callbacks=none", "~logger"]
    if replicas:  # a seed sweep: E networks of random initialisation shapes, the same clock
        overrides += ["model.shape=random", f"model.shape_seed=[{','.join(map(str, range(replicas)))}]"]
        overrides += [] if quiet else ["~callbacks.figures"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    if model is not None:
        cfg.model = OmegaConf.create({"_target_": model})
    return cfg


def dlnlab_rates(jobs: dict[str, dict], repeats: int) -> dict[str, tuple[list[float], float, list[float]]]:
    """{name: (steps/s in each repeat, fixed cost in s, callbacks' share of each repeat's time per step)} of
    dlnlab runs given as {name: dlnlab_cfg's keyword arguments}. Steps/s is the slope between runs of
    `steps` and 2·`steps`; the callbacks' share is the slope of their time (every callback hook, timed by
    Lightning's SimpleProfiler inside the runs) over that of the run's. The runs are interleaved (each
    repeat times every job in turn), so that a slow spell of this shared machine, which can last minutes and
    cost 40%, falls on all of a repeat's jobs alike: ratios are taken within a repeat, then their median."""
    def fit_time(job: dict, steps: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            summary = train(dlnlab_cfg(out=out, **{**job, "steps": steps}))
        return summary["wall_time_s"], sum(t for hook, t in summary["profile_s"].items() if hook.startswith("[Callback]"))
    for job in jobs.values():
        fit_time(job, 50)
    times = {name: ([], []) for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            times[name][0].append(fit_time(job, job["steps"]))
            times[name][1].append(fit_time(job, 2 * job["steps"]))
    rates = {}
    for name, job in jobs.items():
        (short, short_callbacks), (long, long_callbacks) = (zip(*runs) for runs in times[name])
        per_step = [max(b - a, 1e-12) / job["steps"] for a, b in zip(short, long)]
        share = [(b - a) / (p * job["steps"]) for a, b, p in zip(short_callbacks, long_callbacks, per_step)]
        rates[name] = ([1 / p for p in per_step], statistics.median(short) - job["steps"] * statistics.median(per_step),
                       share)
    return rates


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median over repeats of a[r] / b[r]."""
    return statistics.median(x / y for x, y in zip(a, b))


def peak_memory_ratio(n, d, device) -> float:
    """Peak memory added by a dlnlab run (GD, default callbacks), over the size of X: on the CPU the
    resident set of a fresh process (this one's heap holds the earlier runs), on CUDA the allocator's peak."""
    if device == "cuda":  # the device's own allocator knows its peak
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with tempfile.TemporaryDirectory() as out:
            train(dlnlab_cfg(n, d, None, "cuda", False, out, 100))
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
    return int(next(x for x in status.read_text().splitlines() if x.startswith(key)).split()[1]) * 1024
config.register()
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = rss("VmRSS:")
with tempfile.TemporaryDirectory() as out:
    train(bench.dlnlab_cfg({n}, {d}, None, "cpu", False, out, 100))
print((rss("VmHWM:") - before) / ({n} * {d} * 8))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["20x40", "100x1000", "1000x10000"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", nargs="*", type=int, default=[8, 64], help="stack sizes E for the replica rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    config.register()
    steps_for = {"20x40": 20000, "100x1000": 4000, "1000x10000": 200}  # loops timed directly
    slope_for = {"20x40": 2_400_000, "100x1000": 40_000, "1000x10000": 200}  # dlnlab: well above the fixed costs' noise
    results = []
    for size in args.sizes:
        n, d = map(int, size.split("x"))
        steps, slope = steps_for.get(size, 1000), slope_for.get(size, 1000)
        torch.set_num_threads(1 if n * d < 1_000_000 else torch.get_num_threads())
        X, y = (torch.from_numpy(a).to(args.device) for a in synthetic(n=n, d=d, k=5, seed=0))
        for method, batch in (("gd", None), ("sgd", max(1, n // 10))):
            row = {"size": size, "method": method, "device": args.device}
            row["floor"] = median_rate(floor_loop(X, y, batch), steps, args.repeats)
            row["bare"] = median_rate(bare_loop(X, y, batch), steps, args.repeats)
            base = {"n": n, "d": d, "batch": batch, "device": args.device}
            jobs = {"dlnlab": {**base, "quiet": False, "steps": slope}, "quiet": {**base, "quiet": True, "steps": slope}}
            if method == "gd":  # a stack of E replicas, network-steps/s against one network's, timed alongside it
                jobs |= {E: {**base, "quiet": False, "steps": max(20, slope * 8 // E), "replicas": E} for E in args.replicas}
            rates = dlnlab_rates(jobs, args.repeats)
            (dlnlab, row["dlnlab_fixed_s"], timed), (quiet, _, _) = rates["dlnlab"], rates["quiet"]
            row["dlnlab"], row["quiet"] = statistics.median(dlnlab), statistics.median(quiet)
            row["logging_share"] = 1 - median_ratio(dlnlab, quiet)  # of the run time, per repeat: on vs off
            row["callbacks_share_timed"] = statistics.median(timed)  # the same, timed inside the runs
            if method == "gd":
                row["autograd_bare"] = median_rate(bare_autograd_loop(X, y), steps // 4, args.repeats)
                autograd = {"model": "__main__.AutogradUV", "quiet": True, "steps": steps // 4}
                row["autograd_dlnlab"] = statistics.median(
                    dlnlab_rates({"autograd": {**base, **autograd}}, args.repeats)["autograd"][0])
            results.append(row)
            line = (f"{size:>10} {method:>3}: floor {row['floor']:9.0f}/s  bare {row['bare']:9.0f}/s  "
                    f"dlnlab {row['dlnlab']:9.0f}/s  | dlnlab/bare {row['dlnlab'] / row['bare']:.2f}x  "
                    f"step/floor-step {row['floor'] / row['dlnlab']:.2f}x  "
                    f"logging share {row['logging_share']:+.1%} (timed {row['callbacks_share_timed']:.1%})  "
                    f"fixed {row['dlnlab_fixed_s']:.2f} s")
            if method == "gd":
                line += f"  | autograd dlnlab/bare {row['autograd_dlnlab'] / row['autograd_bare']:.2f}x"
            print(line, flush=True)
            if method != "gd":
                continue
            for replicas in args.replicas:
                stack = [replicas * rate for rate in rates[replicas][0]]
                results.append({"size": size, "method": "gd", "device": args.device, "replicas": replicas,
                                "network_steps": statistics.median(stack), "single_network_steps": row["dlnlab"],
                                "over_one_network": median_ratio(stack, dlnlab)})
                print(f"{size:>10}  gd: {replicas:3d} replicas {statistics.median(stack):10.0f} network-steps/s  | over "
                      f"one network {median_ratio(stack, dlnlab):.2f}x", flush=True)
    largest = max(args.sizes, key=lambda s: eval(s.replace("x", "*")))
    n, d = map(int, largest.split("x"))
    memory = peak_memory_ratio(n, d, args.device)
    print(f"peak memory of a dlnlab run at {largest}: {memory:.2f}x the size of X")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": results, "peak_memory_over_data": memory}, indent=2))


if __name__ == "__main__":
    main()
