"""Figures of a run against the theory: matplotlib, for TensorBoard and for PNG files.

Each function takes plain arrays (the run's history, a SaddlePath or None, optional flow samples)
and returns a Figure; the run is drawn solid, the exact finite-α flow dashed, the α → 0 limit
dotted. Every title carries the run's settings (`title`), so that figures of different runs can be
told apart.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RUN, FLOW, LIMIT = dict(lw=1.8), dict(ls="--", lw=1.2), dict(ls=":", lw=1.6, color="k")
MARGINS = dict(left=0.11, right=0.97, bottom=0.12, top=0.88)  # fixed: tight_layout is slow
FLOOR = 1e-14  # relative to L(0): below, a computed loss is rounding, not worth a log axis


def title(replica) -> str:
    """The run's settings in a line: model, α, depth, step size, GD or SGD, replica name."""
    model, config = replica.model, replica.config
    parts = [type(model).__name__]
    if getattr(model, "alpha", None) is not None:
        parts.append(f"α = {model.alpha:.3g}")
    if getattr(model, "depth", None) is not None:
        parts.append(f"depth {model.depth}")
    parts.append(f"lr = {replica.lr:.3g}")
    optim = config.get("optim", {})
    if optim.get("method") == "sgd":
        parts.append(f"SGD, batch {optim.get('batch_size')}")
    elif optim:
        parts.append("GD")
    if replica.name:
        parts.append(f"[{replica.name}]")
    return ", ".join(parts)


def _jump_lines(ax, path, label=True) -> None:
    if path is None:
        return
    for k, t in enumerate(path.times[1:]):
        ax.axvline(t, color="0.6", lw=0.8, ls="-.",
                   label="limit jump times" if label and k == 0 else None)


def _grid(t, path) -> np.ndarray:
    """Accelerated times to draw the limit at: the run's span, stretched to show a limit jump that
    falls a little after it (not one far beyond: the run would shrink to a corner)."""
    end = np.max(t)
    if path is not None:
        near = path.times[path.times <= 1.5 * end]
        end = max(end, near[-1] * 1.1)
    return np.linspace(0, end, 2000)


def loss_figure(t, loss, path, flow_t=None, flow_loss=None, run_jumps=(), name="") -> plt.Figure:
    """L against accelerated time: run, flow, the limit's staircase, and the run's jump times."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    t, loss = np.asarray(t), np.asarray(loss)
    positive = loss > 0
    ax.semilogy(t[positive], loss[positive], label="run (GD/SGD)", **RUN)
    floor = FLOOR * np.max(loss)
    if flow_t is not None:
        shown = np.asarray(flow_loss) > floor
        ax.semilogy(np.asarray(flow_t)[shown], np.asarray(flow_loss)[shown],
                    label="exact flow, same α", **FLOW)
    if path is not None:
        grid = _grid(t, path)
        limit = path.loss(grid)
        shown = limit > floor  # the limit's last saddle has loss 0: not drawn on a log axis
        ax.semilogy(grid[shown], limit[shown], label="limit α → 0 (Algorithm 1)", **LIMIT)
        _jump_lines(ax, path)
    jumps = [j for j in run_jumps if j is not None and t.min() <= j <= t.max()]
    if jumps:
        ax.plot(jumps, np.exp(np.interp(jumps, t, np.log(np.maximum(loss, 1e-300)))), "o", ms=5,
                color="C3", label="run's jump times")
    ax.set_xlabel("accelerated time t = τ / T_α")
    ax.set_ylabel("training loss L(β)")
    ax.set_title(f"Loss: plateaus at saddles, jumps between them\n{name}", fontsize=10)
    ax.legend(fontsize=8)
    fig.subplots_adjust(**MARGINS)
    return fig


def coordinates_figure(t, betas, tracked, path, flow_t=None, flow_betas=None,
                       name="") -> plt.Figure:
    """β_i(t) of the tracked coordinates (top, linear) and |β_i(t)| (bottom, log): run, flow, limit.
    `betas` has a column per tracked coordinate; `flow_betas` all d."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    betas = np.asarray(betas)
    grid = _grid(t, path)
    limit = path.beta(grid, tracked) if path is not None else None
    for c, i in enumerate(tracked):
        color = f"C{c % 10}"
        top.plot(t, betas[:, c], color=color, label=f"β_{i}", **RUN)
        with np.errstate(divide="ignore"):
            bottom.semilogy(t, np.abs(betas[:, c]), color=color, **RUN)
        if limit is not None:
            top.plot(grid, limit[:, c], color=color, ls=":", lw=1.6)
        if flow_t is not None:
            top.plot(flow_t, flow_betas[:, i], color=color, ls="--", lw=1)
            bottom.semilogy(flow_t, np.abs(flow_betas[:, i]), color=color, ls="--", lw=1)
    _jump_lines(top, path, label=False)
    _jump_lines(bottom, path, label=False)
    top.set_ylabel("β_i")
    top.set_title(f"Coordinates: run (solid), exact flow (dashed), limit (dotted)\n{name}",
                  fontsize=10)
    if tracked:
        top.legend(fontsize=8, ncol=4)
    bottom.set_ylabel("|β_i| (log scale)")
    bottom.set_xlabel("accelerated time t")
    largest = [np.nanmax(np.abs(betas))] if betas.size else [1.0]
    if limit is not None and limit.size:
        largest.append(np.abs(limit).max())
    bottom.set_ylim(1e-12, 10 * max(max(largest), 1e-11))
    fig.subplots_adjust(**{**MARGINS, "bottom": 0.08, "top": 0.92, "hspace": 0.08})
    return fig


def dual_figure(t, duals, tracked, path, name="") -> plt.Figure:
    """s_i(t) inside [−1, 1] (a coordinate can be non-zero only once |s_i| reaches 1), or below 1
    for a non-negative network's limit (docs/nonnegative.md: only s_i = 1 activates)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    grid = _grid(t, path)
    limit = path.dual(grid, tracked) if path is not None else None
    for c, i in enumerate(tracked):
        color = f"C{c % 10}"
        ax.plot(t, np.asarray(duals)[:, c], color=color, label=f"s_{i}", **RUN)
        if limit is not None:
            ax.plot(grid, limit[:, c], color=color, ls=":", lw=1.6)
    one_sided = path is not None and path.kind == "nonnegative"
    ax.axhspan(ax.get_ylim()[0] if one_sided else -1, 1, color="0.93", zorder=0)
    ax.axhline(1, color="k", lw=0.8)
    if not one_sided:
        ax.axhline(-1, color="k", lw=0.8)
    _jump_lines(ax, path, label=False)
    ax.set_xlabel("accelerated time t")
    ax.set_ylabel("dual variable s_i")
    ax.set_title(f"Dual s(t) = −∫∇L: run (solid), limit (dotted)\n{name}", fontsize=10)
    if tracked:
        ax.legend(fontsize=8, ncol=4)
    fig.subplots_adjust(**MARGINS)
    return fig


def path3d_figure(betas, tracked, path, name="") -> plt.Figure | None:
    """The trajectory of the three largest coordinates, with the saddles (the paper's Figure 1)."""
    betas = np.asarray(betas)
    if betas.shape[1] < 3:
        return None
    top3 = np.argsort(-np.abs(betas).max(axis=0))[:3]
    fig = plt.figure(figsize=(6, 5.5))
    ax = fig.add_subplot(projection="3d")
    ax.plot(*betas[:, top3].T, lw=1.8, label="run")
    idx = [tracked[c] for c in top3]
    if path is not None:
        saddles = path.betas[:, idx]
        ax.plot(*saddles.T, "k:", lw=1)
        ax.scatter(*saddles.T, color="k", s=25, label="saddles (limit)")
        for k, point in enumerate(saddles):
            ax.text(*point, f" {k}", fontsize=8)
    ax.set_xlabel(f"β_{idx[0]}")
    ax.set_ylabel(f"β_{idx[1]}")
    ax.set_zlabel(f"β_{idx[2]}", labelpad=10)
    ax.tick_params(axis="z", pad=4)
    ax.set_title(f"Saddle-to-saddle path of the three largest coordinates\n{name}", fontsize=10)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.9, bottom=0.04, top=0.9)
    return fig


def render(fig: plt.Figure, dpi: int = 100) -> np.ndarray:
    """The figure as an RGB array (height × width × 3), and the figure closed."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def save(image: np.ndarray, path) -> None:
    """An RGB array as a PNG file."""
    plt.imsave(path, image)
