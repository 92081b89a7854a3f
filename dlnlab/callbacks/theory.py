"""The run against the theory: the α → 0 limit (Algorithm 1) and the exact finite-α flow, overlaid in
TensorBoard (Custom Scalars), tabulated per saddle at the end, drawn as figures, and put in summary.json."""

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np

from dlnlab import plots
from dlnlab.callbacks.coordinates import ActiveCoordinates
from dlnlab.callbacks.plateaus import PlateauLogger
from dlnlab.callbacks.scalars import schedule
from dlnlab.callbacks.tensorboard import tags, writer
from dlnlab.checks import ConfigError
from dlnlab.theory import flow, saddle_path


class TheoryOverlay(pl.Callback):
    """At fit start: the saddle path of the run's data and, for d ≤ `flow_max_d`, the exact flow at the
    run's α (its own jump times included). During the run, `limit/*` and `flow/*` scalars at the steps the
    ActiveCoordinates callback logs. At fit end: the per-saddle comparison (jump time run / flow / limit,
    loss levels, supports), figures (PNG in the run directory and in TensorBoard), and hyperparameters."""

    def __init__(self, flow_max_d: int = 300, figures: bool = True):
        self.flow_max_d, self.figures = flow_max_d, figures
        self.path = None
        self.flow = None
        self.rows: list[dict] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        model = pl_module.model
        if not model.has_clock():
            warnings.warn(f"{type(model).__name__} has no clock (time_scale): no theory overlay", stacklevel=2)
            return
        self._X, self._y = pl_module.X.cpu().numpy(), pl_module.y.cpu().numpy()
        if self.path is None:  # replicas of one run share theirs (same X, y)
            self.path = saddle_path(self._X, self._y)
        steps_per_t = model.time_scale() / pl_module.lr
        horizon = max(trainer.max_steps / steps_per_t, self.path.times[-1] * 1.05)
        mirror = model.mirror_map()
        if mirror is not None and self._X.shape[1] <= self.flow_max_d:
            try:
                self.flow = flow(self._X, self._y, mirror.log_alpha, [horizon], depth=mirror.depth, shape=mirror.shape,
                                 levels=self.path.jump_levels(), dense=True, rtol=1e-8, atol=1e-10)
            except (ConfigError, RuntimeError) as e:
                warnings.warn(f"no exact-flow overlay: {e}", stacklevel=2)
        coordinates = _find(trainer, ActiveCoordinates)
        if coordinates is not None:
            coordinates.references.append(self)
            coordinates.track(sorted(set().union(*self.path.supports())))
            self._write_layout(trainer, coordinates.tracked)

    def _loss(self, beta: np.ndarray) -> np.ndarray:
        r = beta @ self._X.T - self._y
        return (r * r).sum(axis=-1) / (2 * len(self._y))

    def scalars(self, times: np.ndarray, tracked: list[int]) -> list[tuple[np.ndarray, tuple[str, ...], np.ndarray]]:
        """The limit's (and the flow's) loss, β_i and s_i at accelerated times `times`, evaluated for all of them
        at once, as TensorBoard scalars: (indices into `times`, tags, values with a row per index) per source."""
        times = np.asarray(times, dtype=float)
        if self.path is None:
            return []
        key = tuple(tracked)
        every = np.arange(len(times))
        groups = [(every, ("limit/loss",) + tags("limit/beta", key) + tags("limit/dual", key), np.column_stack(
            [self.path.loss(times), self.path.beta(times, tracked), self.path.dual(times, tracked)]))]
        inside = every[times <= self.flow.times[-1]] if self.flow is not None else every[:0]
        if len(inside):
            beta, s = (v.reshape(len(inside), -1) for v in self.flow.at(times[inside]))
            groups.append((inside, ("flow/loss",) + tags("flow/beta", key) + tags("flow/dual", key),
                           np.column_stack([self._loss(beta), beta[:, tracked], s[:, tracked]])))
        return groups

    def _write_layout(self, trainer, tracked: list[int]) -> None:
        tb = writer(trainer)
        if tb is None:
            return
        tb.add_custom_scalars({
            "loss": {"loss: run, exact flow, limit": ["Multiline", ["^train/loss$", "^flow/loss$", "^limit/loss$"]]},
            "coordinates": {f"beta_{i}: run, exact flow, limit": ["Multiline", [f"^(train|flow|limit)/beta/{i}$"]]
                            for i in tracked},
            "dual": {"s_i: run, exact flow, limit": ["Multiline", [r"^(train|flow|limit)/dual/\d+$"]]},
        })

    def on_train_end(self, trainer, pl_module) -> None:
        if self.path is None:
            return
        steps_per_t = pl_module.model.time_scale() / pl_module.lr
        plateaus = _find(trainer, PlateauLogger)
        self.rows = self._compare(plateaus, steps_per_t, trainer.global_step / steps_per_t)
        last = self.rows[-1]
        if last["t_run"] is not None and last["loss_run"] is None:  # the end point, still being approached
            beta = pl_module.model.beta().detach().cpu().numpy()
            threshold = plateaus.active_threshold if plateaus is not None else 1e-2
            last.update(loss_run=pl_module.loss(), support_run=np.flatnonzero(np.abs(beta) > threshold).tolist(),
                        detected="final state")
        tb = writer(trainer)
        if tb is not None:
            tb.add_text("theory/saddles", self.markdown(), trainer.global_step)
            final = {"final/loss": pl_module.loss(), "final/saddles": len(self.path) - 1,
                     "final/detected": sum(r["t_run"] is not None for r in self.rows[1:]) + 1}
            errors = [abs(r["t_run"] / r["t_limit"] - 1) for r in self.rows[1:] if r["t_run"] is not None]
            if errors:
                final["final/max_jump_time_error"] = max(errors)
            hparams = {"alpha": pl_module.model.alpha, "lr": pl_module.lr, "n": len(self._y), "d": self._X.shape[1],
                       "batch_size": pl_module.batch_size or len(self._y), "model": type(pl_module.model).__name__,
                       "depth": getattr(pl_module.model, "depth", 2)}
            for logger in trainer.loggers:
                logger.log_hyperparams(hparams, final)
        if self.figures:
            self._draw(trainer, pl_module, plateaus)

    def _compare(self, plateaus: PlateauLogger | None, steps_per_t: float, t_end: float) -> list[dict]:
        """One row per theoretical saddle. The run's jump time is where its loss first crosses the same
        level that defines the flow's (SaddlePath.jump_levels); a detected plateau belongs to saddle k
        when its middle lies between the run's jumps k and k + 1. The last saddle, when the run has
        jumped to it but is still converging (a zero loss is approached without a plateau in log scale),
        is reported from the run's final state (`detected: "final state"`)."""
        path = self.path
        detector = plateaus.detector if plateaus is not None else None
        t_run = [0.0] + [None] * (len(path) - 1)
        if detector is not None:
            after = 0
            for k, level in enumerate(path.jump_levels(), start=1):
                step = detector.crossing(level, after=after)
                if step is None:
                    break
                t_run[k], after = step / steps_per_t, step
        bounds = t_run + [math.inf]
        rows = []
        for k in range(len(path)):
            match = None
            if detector is not None and t_run[k] is not None:
                end = bounds[k + 1] if bounds[k + 1] is not None else math.inf
                inside = [p for p in detector.plateaus
                          if t_run[k] <= (p.start_t + (p.end_t if p.end_t is not None else t_end)) / 2 < end]
                match = max(inside, key=lambda p: (p.end_t or t_end) - p.start_t, default=None)
            rows.append({
                "k": k, "t_limit": float(path.times[k]),
                "t_flow": None if self.flow is None or k == 0 or np.isnan(self.flow.crossings[k - 1])
                else float(self.flow.crossings[k - 1]) if k else 0.0,
                "t_run": t_run[k], "loss_limit": float(path.losses[k]),
                "loss_run": None if match is None else match.level,
                "support_limit": np.flatnonzero(path.betas[k]).tolist(),
                "support_run": None if match is None else match.support,
                "entering_limit": path.entering[k], "leaving_limit": path.leaving[k],
                "detected": None if match is None else "plateau",
            })
        if rows and self.flow is not None:
            rows[0]["t_flow"] = 0.0
        return rows

    def markdown(self) -> str:
        head = ("| k | t limit | t flow | t run | loss limit | loss run | support limit | support run | in / out |\n"
                "|---|---|---|---|---|---|---|---|---|\n")

        def fmt(v, spec):
            return "—" if v is None else format(v, spec)

        body = "".join(
            f"| {r['k']} | {fmt(r['t_limit'], '.4f')} | {fmt(r['t_flow'], '.4f')} | {fmt(r['t_run'], '.4f')} | "
            f"{fmt(r['loss_limit'], '.4e')} | {fmt(r['loss_run'], '.4e')} | {r['support_limit']} | "
            f"{'—' if r['support_run'] is None else r['support_run']} | "
            f"{' '.join([f'+{i}' for i in r['entering_limit']] + [f'−{i}' for i in r['leaving_limit']])} |\n"
            for r in self.rows)
        return head + body

    def _draw(self, trainer, pl_module, plateaus) -> None:
        coordinates = _find(trainer, ActiveCoordinates)
        if coordinates is None or not coordinates.history["t"]:
            return
        history = coordinates.history
        ncols = len(coordinates.tracked)  # coordinates tracked late have no values before: NaN there
        pad = lambda v: np.pad(v, ((0, 0), (0, ncols - v.shape[1])), constant_values=np.nan)  # noqa: E731
        t, losses = np.concatenate(history["t"]), np.concatenate(history["loss"])
        betas = np.vstack([pad(b) for b in history["beta"]])
        duals = None if history["dual"][-1] is None else np.vstack([pad(s) for s in history["dual"]])
        finite = np.isfinite(losses) & ~np.isinf(betas).any(axis=1)  # a diverged run: draw until then
        steps, loss = plateaus.detector.trace if plateaus is not None else ([], [])
        if len(steps):  # the loss trace at the figure's resolution: 1% in L, 1/2000 of the time span, and its end
            steps_per_t = pl_module.model.time_scale() / pl_module.lr
            shown = np.union1d(schedule(steps, loss, steps_per_t, max(steps[-1], 1) / steps_per_t / 2000, 0.01, None),
                               [len(steps) - 1])
            loss_t, loss = steps[shown] / steps_per_t, loss[shown]
        else:
            loss_t, loss = t, losses
        keep = np.isfinite(loss)
        flow_t = flow_betas = flow_loss = None
        if self.flow is not None:
            flow_t = np.linspace(0, min(self.flow.times[-1], t[finite].max()), 1500)
            flow_betas, _ = self.flow.at(flow_t)
            flow_loss = self._loss(flow_betas)
        tracked = coordinates.tracked
        figures = {
            "loss": plots.loss_figure(loss_t[keep], loss[keep], self.path, flow_t, flow_loss,
                                      [r["t_run"] for r in self.rows[1:]]),
            "coordinates": plots.coordinates_figure(t[finite], betas[finite], tracked, self.path, flow_t, flow_betas),
            "path3d": plots.path3d_figure(np.nan_to_num(betas[finite]), tracked, self.path),
        }
        if duals is not None:
            figures["dual"] = plots.dual_figure(t[finite], duals[finite], tracked, self.path)
        out = Path(trainer.default_root_dir) / "figures"
        out.mkdir(parents=True, exist_ok=True)
        tb = writer(trainer)
        for name, fig in figures.items():
            if fig is None:
                continue
            image = plots.render(fig)  # drawn once, for the file and for TensorBoard
            plt.imsave(out / f"{name}.png", image)
            if tb is not None:
                tb.add_image(f"figures/{name}", image, trainer.global_step, dataformats="HWC")

    def summary(self) -> dict:
        return {"saddles": self.rows}


def _find(trainer, kind):
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)
