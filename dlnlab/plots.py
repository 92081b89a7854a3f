"""Figures of a run against the theory: matplotlib, for TensorBoard and for PNG files.

Each function takes plain arrays (run history, a SaddlePath, optional flow samples) and returns a
Figure; the run is drawn solid, the exact finite-α flow dashed, the α → 0 limit dotted/black.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dlnlab.theory import SaddlePath  # noqa: E402

RUN, FLOW, LIMIT = dict(lw=1.8), dict(ls="--", lw=1.2), dict(ls=":", lw=1.6, color="k")
MARGINS = dict(left=0.11, right=0.97, bottom=0.12, top=0.91)  # fixed: tight_layout was 60% of drawing time


def _jump_lines(ax, path: SaddlePath, label=True) -> None:
    for k, t in enumerate(path.times[1:]):
        ax.axvline(t, color="0.6", lw=0.8, ls="-.", label="limit jump times" if label and k == 0 else None)


def loss_figure(t, loss, path: SaddlePath, flow_t=None, flow_loss=None, run_jumps=()) -> plt.Figure:
    """L against accelerated time: run, flow, the limit's staircase, and the jump times."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    positive = np.asarray(loss) > 0
    ax.semilogy(np.asarray(t)[positive], np.asarray(loss)[positive], label="run (GD/SGD)", **RUN)
    if flow_t is not None:  # below ~1e-14 of L(0) the flow's loss is the solver's rounding, not the flow
        shown = np.asarray(flow_loss) > 1e-14 * np.max(loss)
        ax.semilogy(np.asarray(flow_t)[shown], np.asarray(flow_loss)[shown], label="exact flow, same α", **FLOW)
    t_end = max(np.max(t), path.times[-1] * 1.1)
    grid = np.linspace(0, t_end, 2000)
    limit = path.loss(grid)
    shown = limit > 1e-14 * np.max(loss)  # the last saddle's loss of zero is Algorithm 1's rounding (~1e-32) there
    ax.semilogy(grid[shown], limit[shown], label="limit α → 0 (Algorithm 1)", **LIMIT)
    _jump_lines(ax, path)
    for t_jump in run_jumps:
        if t_jump is not None:
            ax.plot([t_jump], [np.interp(t_jump, t, loss)], "o", ms=5, color="C3")
    ax.set_xlabel("accelerated time t = τ / T_α")
    ax.set_ylabel("training loss L(β)")
    ax.set_title("Loss: plateaus at saddles, jumps between them (dots: run's jump times)")
    ax.legend(fontsize=8)
    fig.subplots_adjust(**MARGINS)
    return fig


def coordinates_figure(t, betas, tracked, path: SaddlePath, flow_t=None, flow_betas=None) -> plt.Figure:
    """β_i(t) for the tracked coordinates (top, linear) and |β_i(t)| (bottom, log): run, flow, limit."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    grid = np.linspace(0, max(np.max(t), path.times[-1] * 1.1), 2000)
    limit = path.beta(grid, tracked)
    betas = np.asarray(betas)
    for c, i in enumerate(tracked):
        color = f"C{c % 10}"
        top.plot(t, betas[:, c], color=color, label=f"β_{i}", **RUN)
        top.plot(grid, limit[:, c], color=color, ls=":", lw=1.6)
        bottom.semilogy(t, np.abs(betas[:, c]), color=color, **RUN)
        if flow_t is not None:
            top.plot(flow_t, flow_betas[:, i], color=color, ls="--", lw=1)
            bottom.semilogy(flow_t, np.abs(flow_betas[:, i]), color=color, ls="--", lw=1)
    _jump_lines(top, path, label=False)
    _jump_lines(bottom, path, label=False)
    top.set_ylabel("β_i")
    top.set_title("Coordinates: run (solid), exact flow (dashed), limit (dotted)")
    top.legend(fontsize=8, ncol=4)
    bottom.set_ylabel("|β_i| (log scale)")
    bottom.set_xlabel("accelerated time t")
    bottom.set_ylim(1e-12, 10 * max(np.nanmax(np.abs(betas)), np.abs(limit).max()))
    fig.subplots_adjust(**{**MARGINS, "bottom": 0.08, "top": 0.95, "hspace": 0.08})
    return fig


def dual_figure(t, duals, tracked, path: SaddlePath) -> plt.Figure:
    """s_i(t) inside [−1, 1]: a coordinate can be non-zero only once |s_i| reaches 1."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    grid = np.linspace(0, max(np.max(t), path.times[-1] * 1.1), 2000)
    limit = path.dual(grid, tracked)
    for c, i in enumerate(tracked):
        color = f"C{c % 10}"
        ax.plot(t, np.asarray(duals)[:, c], color=color, label=f"s_{i}", **RUN)
        ax.plot(grid, limit[:, c], color=color, ls=":", lw=1.6)
    ax.axhspan(-1, 1, color="0.93", zorder=0)
    ax.axhline(1, color="k", lw=0.8)
    ax.axhline(-1, color="k", lw=0.8)
    _jump_lines(ax, path, label=False)
    ax.set_xlabel("accelerated time t")
    ax.set_ylabel("dual variable s_i")
    ax.set_title("Dual s(t) = −∫∇L: run (solid), limit (dotted)")
    ax.legend(fontsize=8, ncol=4)
    fig.subplots_adjust(**MARGINS)
    return fig


def path3d_figure(betas, tracked, path: SaddlePath) -> plt.Figure | None:
    """The trajectory of the three largest coordinates, with the saddles (as in the paper's Figure 1)."""
    betas = np.asarray(betas)
    if betas.shape[1] < 3:
        return None
    top3 = np.argsort(-np.abs(betas).max(axis=0))[:3]
    fig = plt.figure(figsize=(6, 5.5))
    ax = fig.add_subplot(projection="3d")
    ax.plot(*betas[:, top3].T, lw=1.8, label="run")
    idx = [tracked[c] for c in top3]
    saddles = path.betas[:, idx]
    ax.plot(*saddles.T, "k:", lw=1)
    ax.scatter(*saddles.T, color="k", s=25, label="saddles (limit)")
    for k, point in enumerate(saddles):
        ax.text(*point, f" {k}", fontsize=8)
    ax.set_xlabel(f"β_{idx[0]}")
    ax.set_ylabel(f"β_{idx[1]}")
    ax.set_zlabel(f"β_{idx[2]}")
    ax.set_title("Saddle-to-saddle path of the three largest coordinates")
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.92, bottom=0.04, top=0.94)
    return fig


def render(fig: plt.Figure, dpi: int = 100) -> np.ndarray:
    """The figure as an RGB array (height × width × 3), and the figure closed."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
