"""The effective initialisation of a large-step run, and where the run should end
(docs/large-steps.md).

A GD or SGD step with step γ multiplies each coordinate's α_eff² = 2pq (u ⊙ v, p = (u + v)/2,
q = (u − v)/2; 2w₊w₋ for w₊² − w₋²) by 1 − x_i², x = c·γ·g (c = 1 for u ⊙ v, 2 for w±; g the
step's mini-batch gradient), exactly, as long as every |x_i| < 1. This callback logs that gain,
says at which step the run left that regime (the first step with some |x_i| ≥ 1: a sign of p or q
flips there), and at the end compares the run's β with where the theory says it ends.

What it reads from the block record: every step's ‖h‖∞ (h = γ·g as `descend(h)` takes it) and the
parameters at the logged records (`Trajectory.h_max`, `.parameters`).
"""

import math
import sys
import warnings
from pathlib import Path

import numpy as np

from dlnlab.callbacks.base import Milestones, NetworkCallback
from dlnlab.models import SymmetricNetwork, UVNetwork
from dlnlab.theory import hyperbolic_minimizer


def initial_effective_alpha(model) -> np.ndarray | None:
    """α_eff at initialisation, per coordinate: α·a for u ⊙ v, √2·α·a for w₊² − w₋² (depth 2);
    None for any other model (the gain is defined for depth-2 signed networks only)."""
    if isinstance(model, UVNetwork):
        return model.u0.detach().cpu().double().numpy() / math.sqrt(2)
    if isinstance(model, SymmetricNetwork) and model.depth == 2:
        return math.sqrt(2) * model.alpha * model.shape.detach().cpu().double().numpy()
    return None


SHRUNK = 0.01  # figure="auto": drawn when some α_eff shrank by this fraction or more


def gains(a: np.ndarray, b: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """α_eff / α_eff(0) = sqrt(2ab) / α_eff(0) per coordinate (rows of a, b alike), NaN where a or
    b is not positive (a sign flipped: no effective α)."""
    with np.errstate(invalid="ignore"):
        out = np.sqrt(2.0) * np.sqrt(a) * np.sqrt(b) / initial
    return np.where((a > 0) & (b > 0), out, np.nan)


class EffectiveAlpha(NetworkCallback):
    """For u ⊙ v and w₊² − w₋² (depth 2; other models are skipped with one line):

    - in the network's `run` series: at the logged records the gain α_eff,i/α_eff,i(0) (α_eff/α
      for u ⊙ v of uniform shape) as `effective/gain_min`, `effective/gain_median` and a
      histogram `effective/gain` (every `hist_every_t` of accelerated time up to
      10·`hist_every_t`, then every 10% of t); at the logged steps, the step's max_i |x_i|
      (`effective/max_gamma_g`, x = c·γ·g);
    - a text event (`events/left_regime`) at the first step with some |x_i| ≥ 1, found exactly
      from every step's ‖h‖∞ (training goes on);
    - at the end, for d ≤ `max_d`: the run's β against `hyperbolic_minimizer` at the nominal α
      (the gradient flow's end point), at the run's α_eff (the prediction), and at α_eff with the
      offset log(p/q) (where gradient flow from the run's final state would end: how far the run
      is from converged); as a text table (`effective/end_point`), in summary.json
      (`effective_alpha`, `max_gamma_g`, `left_regime`, `end_point`) and as
      `figures/end_point.png` (`figure`: "auto", the default, draws it when the comparison counts
      as converged and the steps shrank some α_eff by 1% or more, where it says something; or
      "always", "never"; about 0.8 s). The comparison counts as converged when the run is within
      `converged_within` × (the nominal prediction's error) of its own end.
    """

    def __init__(self, *, hist_every_t: float, max_d: int, converged_within: float,
                 threshold: float, max_coords: int, figure: str):
        self.hist_every_t, self.max_d, self.converged_within = hist_every_t, max_d, converged_within
        self.threshold, self.max_coords, self.figure = threshold, max_coords, figure

    def start(self, replica, task):
        initial = initial_effective_alpha(replica.model)
        if initial is None:
            return _Skipped(type(replica.model).__name__)
        return _Effective(self, replica, task, initial)

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        skipped = {n.model for n in self.networks if isinstance(n, _Skipped)}
        for name in sorted(skipped):
            print(f"EffectiveAlpha: {name} is not a depth-2 u ⊙ v or w₊² − w₋² network: no "
                  "effective α (skipped)", file=sys.stderr)


class _Skipped:
    """A model this callback does not describe."""

    def __init__(self, model: str):
        self.model = model

    def update(self, trajectory) -> None:
        pass


class _Effective:
    """One network's effective α (see EffectiveAlpha)."""

    def __init__(self, settings: EffectiveAlpha, replica, task, initial: np.ndarray):
        self.settings, self.replica, self.initial = settings, replica, initial
        model = replica.model
        self.first, self.second, _, self.c = model.power_form()
        self.X, self.y = task.theory_data
        self.max_x = 0.0  # max over steps and coordinates of |x| = c·‖h‖∞
        self.left: dict | None = None  # the step that left the regime
        self.histograms = Milestones(settings.hist_every_t)
        self.end_point: dict | None = None
        self.predictions: dict = {}  # the predicted β (for the figure)

    # During the run

    def update(self, trajectory) -> None:
        if trajectory.h_max is None:  # an engine that does not report it
            raise RuntimeError("EffectiveAlpha needs every step's ‖h‖∞ (Trajectory.h_max), which "
                               "this engine does not report: remove it with "
                               "~callbacks.effective_alpha")
        h = trajectory.h_max  # x = c·‖h‖∞ per step; one pass over the block unless some x ≥ 1
        top = self.c * float(np.fmax.reduce(h)) if len(h) else np.nan  # NaN only if all are
        if not np.isnan(top):
            self.max_x = max(self.max_x, top)
        if self.left is None and top >= 1:
            first = int(np.argmax(self.c * h.astype(np.float64) >= 1))  # NaN is not ≥ 1; inf is
            self._leave(trajectory.first_step + first, self.c * float(h[first]))
        tb = self.replica.tensorboard
        if tb is None:
            return
        at = trajectory.logged
        if len(at):
            logged = trajectory.first_step + at
            tb["run"].scalars(logged, ("effective/max_gamma_g",),
                              self.c * h[at].astype(np.float64), t=self.replica.time(logged))
        rows = trajectory.logged_records
        if not len(rows):
            return
        a, b = (trajectory.parameters[n].astype(np.float64) for n in (self.first, self.second))
        g = gains(a, b, self.initial)
        record_steps = trajectory.steps[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: every coordinate flipped
            summary = np.column_stack([np.nanmin(g, axis=1), np.nanmedian(g, axis=1)])
        tb["run"].scalars(record_steps, ("effective/gain_min", "effective/gain_median"), summary,
                          t=self.replica.time(record_steps))
        self._histograms(tb, record_steps, g)

    def _leave(self, step: int, x: float) -> None:
        """The first step with some |x_i| ≥ 1: a text event, and the summary's `left_regime`."""
        model = self.replica.model
        a, b = (getattr(model, name).detach().cpu().numpy() for name in (self.first, self.second))
        flipped = np.flatnonzero((a <= 0) | (b <= 0)).tolist()  # at the end of this block
        t = float(self.replica.time(step))
        self.left = {"step": step, "t": t, "max_gamma_g": x, "flipped_at_block_end": flipped}
        if self.replica.tensorboard is not None:
            self.replica.tensorboard["run"].text(
                "events/left_regime", f"t = {t:.4g}, step {step}: max|x| = {x:.4g} ≥ 1 (x = "
                f"{'' if self.c == 1 else f'{self.c:g}·'}γ·g): a sign of "
                f"{self.first} or {self.second} flipped, α_eff no longer describes the run "
                f"(coordinates not positive at the end of the block: {flipped}); training goes on",
                step)

    def _histograms(self, tb, steps, g) -> None:
        """A histogram of the gain at the logged records due (Milestones: every hist_every_t of t,
        then 10%)."""
        for j in self.histograms.due(self.replica.time(steps), lambda j: np.isfinite(g[j]).any()):
            # a spread below 1e-9 is one bin: numpy's "auto" bins fail on a range of a few ulps
            tb["run"].histogram("effective/gain", np.round(g[j][np.isfinite(g[j])], 9),
                                int(steps[j]))

    # At the end

    def _factors(self) -> tuple[np.ndarray, np.ndarray]:
        model = self.replica.model
        return tuple(getattr(model, name).detach().cpu().double().numpy()
                     for name in (self.first, self.second))

    def end(self, task) -> None:
        """The end point (before summary.json is written)."""
        replica, d = self.replica, self.X.shape[1]
        if replica.status == "diverged" or not replica.steps_done:
            self.end_point = {"skipped": f"the run {replica.status} with no end point"}
        elif d > self.settings.max_d:
            self.end_point = {"skipped": f"d = {d} > callbacks.effective_alpha.max_d = "
                                         f"{self.settings.max_d}"}
        else:
            try:
                self.end_point = self._end_point()
            except (RuntimeError, ValueError) as e:  # a failed solve: say so, never fatal
                self.end_point = {"skipped": f"{type(e).__name__}: {e}"}
        if "skipped" in self.end_point:
            if replica.status != "diverged":  # a diverged run says so itself
                name = f": {replica.name}" if replica.name and d <= self.settings.max_d else ""
                warnings.warn(f"EffectiveAlpha{name}: no end point comparison "
                              f"({self.end_point['skipped']})", stacklevel=1)
        elif replica.tensorboard is not None:
            replica.tensorboard["run"].text("effective/end_point", self.table(),
                                            replica.steps_done)

    def _end_point(self) -> dict:
        """The errors of the three predictions; the β they predict go to `self.predictions` (for
        the figure: not to summary.json, whose tiny entries carry the solves' tolerance)."""
        a, b = self._factors()
        beta = a * a - b * b
        X, y = self.X, self.y
        # Below this an error is the solves' tolerance (rtol 1e-10 on the constraint), not a
        # distance: reported as 0, so that runs equal to rounding report equal numbers.
        resolution = 1e-9 * max(float(np.abs(beta).max()), np.finfo(float).tiny)

        def error(prediction):
            if prediction is None:
                return None
            e = float(np.abs(beta - prediction).max())
            return e if e >= resolution else 0.0

        nominal = hyperbolic_minimizer(X, y, self.initial)
        effective = continuation = None
        if self.left is None and np.all((a > 0) & (b > 0)):
            alpha_eff = self.initial * gains(a, b, self.initial)
            effective = hyperbolic_minimizer(X, y, alpha_eff)
            continuation = hyperbolic_minimizer(X, y, alpha_eff,
                                                offset=self._null(np.log(a) - np.log(b)))
        self.predictions = {"nominal α": nominal, "α_eff": effective}
        errors = {"nominal": error(nominal), "effective": error(effective),
                  "continuation": error(continuation)}
        result = {"errors": errors, "converged": None, "ratio": None, "resolution": resolution}
        if continuation is not None:
            result["converged"] = bool(errors["continuation"]
                                       <= self.settings.converged_within * errors["nominal"])
            result["ratio"] = errors["nominal"] / max(errors["effective"],
                                                      errors["continuation"], resolution)
        else:
            result["reason"] = (f"left the regime at step {self.left['step']}" if self.left
                                else "a factor is not positive")
        return result

    def _null(self, offset: np.ndarray) -> np.ndarray:
        """The part of an offset outside range(Xᵀ), the only part that moves the minimiser
        (docs/large-steps.md §3): log(p/q) itself reaches hundreds at small α, where the solver's
        first iterate overflows."""
        if not hasattr(self, "_rows"):
            _, S, Vt = np.linalg.svd(self.X, full_matrices=False)
            self._rows = Vt[:int(np.sum(S > max(self.X.shape) * np.finfo(float).eps * S[0]))]
        return offset - self._rows.T @ (self._rows @ offset)

    def table(self) -> str:
        """The end-point comparison as a markdown table."""
        e = self.end_point
        rows = [("nominal α (gradient flow's end point)", e["errors"]["nominal"]),
                ("α_eff (the prediction)", e["errors"]["effective"]),
                ("α_eff + offset log(p/q) (flow from the final state: convergence)",
                 e["errors"]["continuation"])]
        lines = ["| prediction | ‖β_run − β_pred‖∞ |", "|---|---|"]
        lines += [f"| {name} | {'—' if v is None else f'{v:.3e}'} |" for name, v in rows]
        verdict = (f"ratio nominal / α_eff: {e['ratio']:.3g}; converged: {e['converged']}"
                   if e["ratio"] is not None else f"no α_eff prediction: {e.get('reason')}")
        if e["converged"] is False:  # the three rows then measure how far the run still has to go
            verdict += (" (the run is still moving: the rows compare end points only once it "
                        "has converged; train longer, run.t_max)")
        return "\n".join(lines) + f"\n\n{verdict}; max|x| over the run: {self.max_x:.4g}"

    def summary(self) -> dict:
        a, b = self._factors()
        g = gains(a, b, self.initial)
        finite = g[np.isfinite(g)]
        out = {"effective_alpha": {
            "gain": [None if not np.isfinite(v) else float(v) for v in g],
            "alpha_eff": [None if not np.isfinite(v) else float(v) for v in self.initial * g],
            "min": float(finite.min()) if len(finite) else None,
            "median": float(np.median(finite)) if len(finite) else None,
            "not_positive": np.flatnonzero(~np.isfinite(g)).tolist()},
            "max_gamma_g": self.max_x, "left_regime": self.left}
        if self.end_point is not None:
            out["end_point"] = self.end_point
        return out

    def draw(self, task) -> None:
        end, when = self.end_point, self.settings.figure
        if end is None or "skipped" in end or when == "never":
            return
        if when == "auto" and not (end["converged"] and np.nanmin(
                gains(*self._factors(), self.initial)) <= 1 - SHRUNK):
            return
        from dlnlab import plots  # matplotlib: only when drawing

        image = plots.render(self._figure(plots.title(self.replica)))
        out = Path(self.replica.directory) / "figures"
        out.mkdir(parents=True, exist_ok=True)
        plots.save(image, out / "end_point.png")
        if self.replica.tensorboard is not None:
            self.replica.tensorboard["run"].image("figures/end_point", image,
                                                  self.replica.steps_done)

    def _figure(self, title: str):
        import matplotlib.pyplot as plt

        a, b = self._factors()
        beta, e = a * a - b * b, self.end_point
        colours = {"nominal α": "tab:orange", "α_eff": "tab:green"}
        predictions = {k: (v, colours[k]) for k, v in self.predictions.items() if v is not None}
        scale = np.max([np.abs(beta)] + [np.abs(v) for v, _ in predictions.values()], axis=0)
        shown = [int(i) for i in np.argsort(-scale) if scale[i] > self.settings.threshold]
        shown = sorted(shown[:self.settings.max_coords])
        fig, axes = plt.subplots(3, 1, figsize=(7.5, 8.4), height_ratios=[3, 2, 2])
        x = np.arange(len(shown))
        ax = axes[0]
        ax.bar(x, beta[shown], width=0.6, color="tab:blue", alpha=0.5, label="run's final β")
        for (name, (values, colour)), offset in zip(predictions.items(), (-0.15, 0.15)):
            err = e["errors"]["nominal" if name == "nominal α" else "effective"]
            ax.scatter(x + offset, values[shown], marker="_", s=500, lw=2.5, color=colour,
                       label=f"{name}: ‖Δ‖∞ = {err:.2e}", zorder=3)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xticks(x, [str(i) for i in shown])
        ax.set_ylabel("β_i at the end")
        ax.legend(fontsize=8, loc="best")
        verdict = (f"ratio {e['ratio']:.3g}, {'converged' if e['converged'] else 'NOT converged'}"
                   f" (flow from the final state moves β by {e['errors']['continuation']:.1e})"
                   if e["ratio"] is not None else f"no α_eff prediction: {e.get('reason')}")
        ax.set_title(f"{title}\nwhere the run ends: max|γg| = {self.max_x:.3g}; {verdict}",
                     fontsize=8.5)
        ax = axes[1]
        for (name, (values, colour)), offset in zip(predictions.items(), (-0.15, 0.15)):
            ax.bar(x + offset, np.maximum(np.abs(values - beta), e["resolution"])[shown],
                   width=0.3, color=colour, label=name)
        if e["errors"]["continuation"] is not None:
            ax.axhline(max(e["errors"]["continuation"], e["resolution"]), color="0.3", ls="--",
                       lw=1, label="flow from the final state (convergence; floor: the solves' "
                       "resolution)")
        ax.set_yscale("log")
        ax.set_xticks(x, [str(i) for i in shown])
        ax.set_ylabel("|prediction − run|")
        ax.set_xlabel("coordinate i (the largest of run and predictions)")
        ax.legend(fontsize=7.5, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
        ax = axes[2]
        g = gains(a, b, self.initial)
        ax.bar(np.arange(len(g)), np.nan_to_num(g, nan=0.0), width=0.8, color="0.55")
        ax.bar(shown, np.nan_to_num(g[shown], nan=0.0), width=0.8, color="tab:blue",
               label="coordinates above")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("coordinate i")
        ax.set_ylabel("α_eff,i / α_eff,i(0)")
        ax.legend(fontsize=8, loc="lower right")
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.06, top=0.92, hspace=0.45)
        return fig

    def state_dict(self) -> dict:
        return {"max_x": self.max_x, "left": self.left, "histograms": self.histograms.count}

    def load_state_dict(self, state: dict) -> None:
        self.max_x, self.left = state["max_x"], state["left"]
        self.histograms.count = state["histograms"]

