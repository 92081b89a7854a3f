"""Benchmark: saddle_path (Algorithm 1) against scikit-learn's lars_path(method="lasso"), same data,
one process.

    python scripts/bench_theory.py [--n 200 --d 2000 --k 5 --noise 0.5 --repeats 7] [--json
    out.json]

Prints the median time of each over the repeats and their ratio (goal: saddle_path ≤ 2× lars_path).
"""

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import lars_path

from dlnlab.data import synthetic
from dlnlab.theory import saddle_path


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--d", type=int, default=2000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=3, help="data sets, each timed on its own")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        X, y = synthetic(n=args.n, d=args.d, k=args.k, noise=args.noise, seed=seed)
        path = saddle_path(X, y)
        lars = lars_path(X, y, method="lasso")
        ours = median_time(lambda: saddle_path(X, y), args.repeats)
        theirs = median_time(lambda: lars_path(X, y, method="lasso"), args.repeats)
        rows.append({"seed": seed, "saddles": len(path) - 1, "lars_steps": len(lars[0]) - 1,
                     "saddle_path_s": ours, "lars_path_s": theirs, "ratio": ours / theirs})
        print(
            f"n={args.n} d={args.d} seed={seed}: {rows[-1]['saddles']} saddles in "
            f"{ours * 1e3:.1f} ms, lars_path {rows[-1]['lars_steps']} steps in "
            f"{theirs * 1e3:.1f} ms: ratio {ours / theirs:.2f}"
        )
    print(
        f"median ratio saddle_path / lars_path: {np.median([r['ratio'] for r in rows]):.2f} "
        "(goal ≤ 2)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
