"""Large steps on sparse recovery: where GD and SGD end as the step grows (docs/large-steps.md).

    python scripts/large_steps.py [--quick] [--out outputs/large_steps/<time>]

The problem of conf/experiment/large_steps.yaml (n = 20 < d = 40, noiseless 3-sparse β*, u ⊙ v at
α = 0.1). For GD, SGD with batch 1 and SGD with batch 5 (random reshuffling), step sizes from 5% to
twice each method's linear stability limit γ_s (below), each method one replica run of dlnlab
(`optim.lr=[...]`), trained to τ = t·log(1/α) = 30000 (quick: 4 step sizes each, τ = 3000).
Each network's EffectiveAlpha callback gives its gain, whether a step left the regime
(|γ g_i| ≥ 1) and its end point against the theory; this script collects them into
`report.md`, `large_steps.json` and `large_steps.png`:

(a) the recovery error ‖β_∞ − β*‖₂ against γ/γ_s, GD and SGD side by side;
(b) the gain α_eff,i/α on the support of β* and off it, at the smallest step and at the largest
    step that stayed in the regime, for each method;
(c) the end-point prediction error ‖β_∞ − β_pred‖∞ with α_eff and with the nominal α.

γ_s: GD (or SGD with batches S of size B), linearised at the gradient flow's end point
β_flow = hyperbolic_minimizer(X, y, α), is stable for γ < B / max_S λ_max(X_S D X_Sᵀ),
D = diag(sqrt(β_flow² + α⁴)) (docs/large-steps.md §5; the maximum over the flow's path is within
0.2% of it here). Every batch of size B is enumerated up to 20000 of them, else 20000 drawn.
"""

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from dlnlab import config
from dlnlab.config import CONF_DIR
from dlnlab.data import synthetic
from dlnlab.theory import hyperbolic_minimizer

METHODS = {"GD": None, "SGD, batch 1": 1, "SGD, batch 5": 5}
COLOURS = {"GD": "tab:blue", "SGD, batch 1": "tab:red", "SGD, batch 5": "tab:purple"}
FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
QUICK_FRACTIONS = (0.1, 0.5, 1.0, 1.5)
TAU, QUICK_TAU = 30000.0, 3000.0  # flow time τ = t·log(1/α) every network runs for
INTERPOLATES = 1e-6  # a run interpolates when ‖Xβ − y‖₂ ≤ this × ‖y‖₂


def problem(cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X, y of the experiment's data, and its ground truth β* (drawn again as
    dlnlab.data.synthetic draws it, checked against its X and y)."""
    data = cfg.data
    X, y = synthetic(n=data.n, d=data.d, k=data.k, noise=data.noise, seed=data.seed)
    rng = np.random.default_rng(data.seed)
    if data.features != "gaussian" or not np.array_equal(rng.standard_normal((data.n, data.d)), X):
        raise SystemExit("large_steps: β* is redrawn for gaussian synthetic data only")
    beta_star = np.zeros(data.d)
    support = rng.choice(data.d, size=data.k, replace=False)
    beta_star[support] = rng.choice([-1.0, 1.0], size=data.k) * rng.uniform(0.5, 1.5, size=data.k)
    if data.noise == 0:
        np.testing.assert_allclose(X @ beta_star, y, rtol=0, atol=1e-12 * np.abs(y).max())
    return X, y, beta_star


def stable_step(X, y, alpha: float, batch: int | None, most: int = 20000) -> float:
    """B / max_S λ_max(X_S D X_Sᵀ) at the flow's end point (module docstring): the largest step
    for which GD (batch None) or SGD with batches of `batch` rows is linearly stable there."""
    n = len(y)
    beta = hyperbolic_minimizer(X, y, alpha)
    gram = (X * np.sqrt(beta**2 + alpha**4)) @ X.T
    if batch is None:
        return n / np.linalg.eigvalsh(gram)[-1]
    if math.comb(n, batch) <= most:
        subsets = np.array(list(itertools.combinations(range(n), batch)))
    else:
        rng = np.random.default_rng(0)
        subsets = np.array([rng.choice(n, batch, replace=False) for _ in range(most)])
    blocks = gram[subsets[:, :, None], subsets[:, None, :]]
    return batch / np.linalg.eigvalsh(blocks)[:, -1].max()


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def sweep(out: Path, quick: bool) -> dict:
    """Train the three replica runs; return what the report needs."""
    from dlnlab.train import train  # torch and Lightning: only when training

    config.register()
    base = compose_cfg("experiment=large_steps")
    X, y, beta_star = problem(base)
    alpha = float(base.model.alpha)
    fractions, tau = (QUICK_FRACTIONS, QUICK_TAU) if quick else (FRACTIONS, TAU)
    flow_end = hyperbolic_minimizer(X, y, alpha)
    result = {"alpha": alpha, "n": len(y), "d": X.shape[1], "support": np.flatnonzero(beta_star)
              .tolist(), "beta_star": beta_star.tolist(), "tau": tau, "quick": quick,
              "flow_recovery": float(np.linalg.norm(flow_end - beta_star)), "methods": {}}
    for method, batch in METHODS.items():
        stable = stable_step(X, y, alpha, batch)
        lrs = [f * stable for f in fractions]
        optim = ["optim=gd"] if batch is None else ["optim=sgd", f"optim.batch_size={batch}"]
        folder = out / "runs" / method.replace(", ", "_").replace(" ", "")
        print(f"{method}: γ_s = {stable:.4g}, {len(lrs)} step sizes -> {folder}", flush=True)
        start = time.perf_counter()
        summary = train(compose_cfg(
            "experiment=large_steps", *optim, f"optim.lr=[{','.join(f'{v:.6g}' for v in lrs)}]",
            f"run.t_max={tau / math.log(1 / alpha):.8g}", "~callbacks.theory",
            "~callbacks.plateaus",  # SGD's noisy loss: most of a run's time in plateau windows
            "~callbacks.figures", "callbacks.effective_alpha.figure=never",
            "trainer.enable_progress_bar=false", f"run.output_dir={folder}"))
        runs = []
        for fraction, entry in zip(fractions, summary["replicas"]):
            runs.append(_row(entry, fraction, X, y, beta_star))
        result["methods"][method] = {"batch": batch, "stable_step": stable, "runs": runs,
                                     "wall_time_s": time.perf_counter() - start}
    return result


def _row(entry: dict, fraction: float, X, y, beta_star) -> dict:
    """One network's line: step, status, regime, recovery, gain, end-point errors."""
    beta = np.asarray(entry["beta"], dtype=float)
    finite = entry["status"] != "diverged" and np.all(np.isfinite(beta))
    residual = float(np.linalg.norm(X @ beta - y) / np.linalg.norm(y)) if finite else None
    end = entry.get("end_point") or {}
    gain = entry.get("effective_alpha", {}).get("gain")
    return {"fraction": fraction, "lr": entry["lr"], "status": entry["status"],
            "steps": entry["steps"], "max_gamma_g": entry.get("max_gamma_g"),
            "left_regime": (entry.get("left_regime") or {}).get("step"),
            "residual": residual, "interpolates": residual is not None
            and residual <= INTERPOLATES,
            "recovery": float(np.linalg.norm(beta - beta_star)) if finite else None,
            "gain": gain if entry.get("left_regime") is None else None,
            "errors": end.get("errors"), "ratio": end.get("ratio"),
            "converged": end.get("converged")}


def _fmt(value, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def figure(result: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 5.0), width_ratios=[1.1, 1.2, 1.1])
    support = set(result["support"])
    for method, m in result["methods"].items():
        colour, runs = COLOURS[method], m["runs"]
        done = [r for r in runs if r["recovery"] is not None]
        a.plot([r["fraction"] for r in done], [r["recovery"] for r in done], "-", color=colour,
               label=f"{method} (γ_s = {m['stable_step']:.3g})")
        for r in done:
            inside = r["left_regime"] is None
            a.plot(r["fraction"], r["recovery"], "o", color=colour,
                   mfc=colour if inside else "white", ms=7 if r["interpolates"] else 4)
        for r in runs:
            if r["recovery"] is None:
                a.plot(r["fraction"], 1.0, "x", color=colour, ms=8,
                       transform=a.get_xaxis_transform())
        inside = [r for r in runs if r["errors"] and r["errors"]["effective"] is not None
                  and r["converged"]]
        if inside:
            xs = [r["fraction"] for r in inside]
            c.loglog(xs, [r["errors"]["effective"] for r in inside], "o-", color=colour,
                     label=f"{method}: α_eff")
            c.loglog(xs, [r["errors"]["nominal"] for r in inside], "s--", color=colour,
                     mfc="white", label=f"{method}: nominal α")
    a.axhline(result["flow_recovery"], color="k", ls=":", lw=1.2,
              label="gradient flow (γ → 0)")
    a.axvline(1.0, color="0.6", lw=0.8, ls="-.")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set(xlabel="step size γ / γ_s (γ_s: linear stability at the flow's end point)",
          ylabel="‖β_∞ − β*‖₂", title="(a) recovery of the sparse β*")
    a.legend(fontsize=8, loc="upper left")
    a.text(0.01, -0.2, "filled: |γg| < 1 at every step; open: some step had |γg| ≥ 1;\n"
           "small: not interpolating (‖Xβ − y‖ > 1e-6‖y‖); × at the top: diverged",
           transform=a.transAxes, fontsize=7.5, va="top")
    # (b) the gain's shape: smallest step, and the largest still in the regime
    columns, labels = [], []
    for method, m in result["methods"].items():
        kept = [r for r in m["runs"] if r["gain"] is not None and r["status"] == "completed"]
        if not kept:
            continue
        for r in ({id(kept[0]): kept[0], id(kept[-1]): kept[-1]}).values():
            columns.append((method, r))
            labels.append(f"{method}\nγ/γ_s = {r['fraction']:g}\nmax|γg| = "
                          f"{r['max_gamma_g']:.2f}")
    rng = np.random.default_rng(0)
    for j, (method, r) in enumerate(columns):
        g = np.asarray(r["gain"], dtype=float)
        off = np.array([i not in support for i in range(len(g))])
        b.scatter(j + 0.12 * rng.uniform(-1, 1, off.sum()), g[off], s=10, color="0.55",
                  label="off the support" if j == 0 else None)
        b.scatter(np.full((~off).sum(), j), g[~off], s=60, color=COLOURS[method],
                  edgecolor="k", zorder=3, label="support of β*" if j == 0 else None)
    b.set_yscale("log")
    b.set_xticks(range(len(columns)), labels, fontsize=7)
    b.set(ylabel="α_eff,i / α at the end",
          title="(b) the gain: smallest step, largest with |γg| < 1")
    b.legend(fontsize=8)
    c.set(xlabel="step size γ / γ_s", ylabel="‖β_∞ − β_pred‖∞",
          title="(c) end point against the theory")
    c.text(0.01, -0.2, "hyperbolic_minimizer(X, y, α_eff) and (X, y, α); converged runs whose "
           "steps\nall kept |γg| < 1 (α_eff is not defined past a sign flip)",
           transform=c.transAxes, fontsize=7.5, va="top")
    c.legend(fontsize=7, ncol=1)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.24, top=0.93, wspace=0.22)
    return fig


def report(result: dict, out: Path, seconds: float) -> str:
    lines = [f"# Large steps on sparse recovery{' (quick)' if result['quick'] else ''}", "",
             f"u ⊙ v at α = {result['alpha']:g} on synthetic(n={result['n']}, d={result['d']}, "
             f"k={len(result['support'])}, noise=0, seed=0) (conf/experiment/large_steps.yaml), "
             f"support of β*: {result['support']}; every network trained to τ = "
             f"{result['tau']:g}. The gradient flow ends at ‖β_flow − β*‖₂ = "
             f"{result['flow_recovery']:.4f}.", "",
             "![large steps](large_steps.png)", "",
             "Columns: γ/γ_s; status; max over steps and coordinates of |γ g_i| (≥ 1: the run "
             "left the regime, at the step given); ‖Xβ − y‖₂/‖y‖₂; recovery ‖β_∞ − β*‖₂; the "
             "gain α_eff/α on the support (mean) and off it (mean); ‖β_∞ − β_pred‖∞ with the "
             "nominal α and with α_eff, and the run's distance to its own end point (gradient "
             "flow from its final state; 0: below the solves' resolution, 1e-9‖β‖∞); their "
             "ratio; converged (that distance ≤ 0.1 × the "
             "nominal error).", ""]
    support = set(result["support"])
    for method, m in result["methods"].items():
        lines += [f"## {method}: γ_s = {m['stable_step']:.4g} ({m['wall_time_s']:.0f} s)", "",
                  "| γ/γ_s | γ | status | max\\|γg\\| | left at step | residual | ‖β−β*‖₂ | "
                  "gain on / off support | ‖Δ‖∞ nominal | ‖Δ‖∞ α_eff | to own end | ratio | "
                  "converged |", "|" + "---|" * 13]
        for r in m["runs"]:
            e = r["errors"] or {}
            if r["gain"] is not None:
                g = np.asarray(r["gain"], dtype=float)
                on = np.mean([g[i] for i in support])
                off = np.mean([g[i] for i in range(len(g)) if i not in support])
                gain = f"{on:.3f} / {off:.3f}"
            else:
                gain = "—"
            lines.append(
                f"| {r['fraction']:g} | {r['lr']:.4g} | {r['status']} | {_fmt(r['max_gamma_g'])} "
                f"| {_fmt(r['left_regime'], 'd')} | {_fmt(r['residual'], '.1e')} | "
                f"{_fmt(r['recovery'], '.4f')} | {gain} | {_fmt(e.get('nominal'), '.2e')} | "
                f"{_fmt(e.get('effective'), '.2e')} | {_fmt(e.get('continuation'), '.1e')} | "
                f"{_fmt(r['ratio'])} | {_fmt(r['converged'], '')} |")
        lines.append("")
    lines += [f"Ran in {seconds:.0f} s: `python scripts/large_steps.py"
              f"{' --quick' if result['quick'] else ''}`; each method's replica run (TensorBoard: "
              f"effective/…, events/left_regime) under `{out.name}/runs/`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_FRACTIONS)} step sizes a method, τ = {QUICK_TAU:g}")
    parser.add_argument("--out", type=Path, default=Path("outputs/large_steps")
                        / time.strftime("%Y-%m-%d_%H-%M-%S"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    result = sweep(args.out, args.quick)
    fig = figure(result)
    fig.savefig(args.out / "large_steps.png", dpi=100)
    (args.out / "large_steps.json").write_text(json.dumps(result, indent=1))
    (args.out / "report.md").write_text(report(result, args.out, time.perf_counter() - start))
    print(f"-> {args.out / 'report.md'}", file=sys.stderr)
    return args.out


if __name__ == "__main__":
    main()
