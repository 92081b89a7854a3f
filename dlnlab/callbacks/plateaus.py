"""Online plateau detection on the per-step loss record, in accelerated time.

A plateau is a stretch of accelerated time over which every sliding window of length `window_t`
sees the loss vary by at most `rtol` relative (plus `atol`·L(0), so that the approach to a zero loss
also ends on a plateau): it starts with the first such window and ends with the first window that
is not. A slow drift (the next coordinate growing before its jump) stays on the plateau. The loss is
reduced to the minimum and maximum over bins of `window_t / bins`, and the windows of bins are
checked by numpy over each block of steps: Python runs once per plateau event, not per step or bin.
A compressed trace of the loss (a sample whenever log L moves by `trace_resolution`) gives each
jump its empirical time: where the loss first falls to the middle of the drop between the two
plateaus' levels.
"""

from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from dlnlab.callbacks.base import NetworkCallback


@dataclass
class Plateau:
    start_step: int
    start_t: float
    level: float  # the loss at the record nearest the plateau's middle (at detection: its window's)
    end_step: int | None = None  # None while the plateau lasts (or if the run ends on it)
    end_t: float | None = None
    jump_step: int | None = None  # the jump into this plateau (None for the first)
    jump_t: float | None = None
    beta: list[float] | None = None  # β at the last recorded step on the plateau
    support: list[int] = field(default_factory=list)


def sliding(op: np.ufunc, a: np.ndarray, k: int) -> np.ndarray:
    """op (np.minimum or np.maximum) over every window a[i:i + k]: by doubling spans, about log₂ k
    passes over `a` (a reduction along a short strided axis costs k; scipy.ndimage's
    minimum_filter1d, the library's route, is an order of magnitude slower on windows this
    short)."""
    out, span = a, 1
    while 2 * span <= k:
        out, span = op(out[:-span], out[span:]), 2 * span
    return op(out[:len(a) - k + 1], out[k - span:]) if span < k else out


def binned(op: np.ufunc, a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """op (np.minimum or np.maximum) over each bin a[starts[i]:starts[i + 1]] (the last to the
    end), where every bin but the first and the last has the same width: for narrow bins (a few
    steps, at large α) from `sliding` (reduceat costs ~10× more there), else by reduceat."""
    width = int(starts[2] - starts[1]) if len(starts) > 2 else 0
    if not 1 <= width <= 16:
        return op.reduceat(a, starts)
    out = np.empty(len(starts), dtype=a.dtype)
    out[1:-1] = sliding(op, a, width)[starts[1:-1]]
    out[0], out[-1] = op.reduce(a[starts[0]:starts[1]]), op.reduce(a[starts[-1]:])
    return out


def midpoint(before: float, after: float) -> float:
    """The loss level that marks the jump between plateaus at `before` and `after`: the middle of
    the drop, as for the limit's jumps (docs/jump-times.md)."""
    return after + 0.5 * (before - after)


class PlateauDetector:
    """Feed it blocks of per-step losses with `update`; it keeps the list of plateaus."""

    def __init__(self, window_t: float = 0.05, rtol: float = 0.02, atol: float = 1e-10,
                 bins: int = 8, trace_resolution: float = 1e-3):
        if not (window_t > 0 and rtol > 0 and atol >= 0 and bins >= 1 and trace_resolution > 0):
            raise ValueError(f"plateau detector: window_t={window_t}, rtol={rtol}, bins={bins} and "
                             f"trace_resolution={trace_resolution} must be > 0, atol={atol} ≥ 0")
        self.window_t, self.rtol, self.atol, self.bins = window_t, rtol, atol, bins
        self.trace_resolution = trace_resolution
        self.plateaus: list[Plateau] = []
        self.in_plateau = False
        self.loss0: float | None = None
        self._window: deque = deque(maxlen=bins)  # complete bins: (first step, min, max)
        self._partial: tuple | None = None  # the bin still filling: (bin id, first step, min, max)
        self._trace_steps, self._trace_losses = np.zeros(0, dtype=np.int64), np.zeros(0)
        self._last: float | None = None  # the trace's last log-loss bin

    def _tolerance(self, level: float) -> float:
        return self.rtol * level + self.atol * self.loss0

    def update(self, first_step: int, losses: np.ndarray, steps_per_t: float, on_event=None,
               log_losses: np.ndarray | None = None) -> list[tuple[str, Plateau]]:
        """Process the losses of steps first_step, first_step + 1, …; return ("start" | "end",
        plateau) events. on_event(kind, plateau), if given, is called at each event before the
        losses after it are looked at (so a plateau ended and settled there gives the next one's
        jump its final level, whatever the block). log_losses: log(losses), if already computed."""
        if not len(losses):
            return []
        if self.loss0 is None:
            self.loss0 = float(losses[0])
        self._extend_trace(first_step, losses, log_losses)
        width = self._width(steps_per_t)
        starts = np.arange((-first_step) % width, len(losses), width)  # where bins begin
        if not len(starts) or starts[0]:
            starts = np.concatenate([[0], starts])
        steps = first_step + starts
        ids = steps // width
        lows, highs = binned(np.minimum, losses, starts), binned(np.maximum, losses, starts)
        if self._partial is not None:  # the bin left open by the last block
            pid, pstep, plow, phigh = self._partial
            if pid == ids[0]:
                steps[0], lows[0], highs[0] = pstep, min(plow, lows[0]), max(phigh, highs[0])
            else:
                ids, steps, lows, highs = (np.insert(a, 0, v) for a, v in
                                           zip((ids, steps, lows, highs), self._partial))
        self._partial = (int(ids[-1]), int(steps[-1]), float(lows[-1]), float(highs[-1]))
        events = self._on_bins(steps[:-1], lows[:-1], highs[:-1], steps_per_t, on_event)
        self._trim_trace()
        return events

    def _trim_trace(self) -> None:
        """Keep only the trace a jump can still be searched in: a jump is looked for after the last
        plateau's end; during a plateau, from the first step of its still-open bin on (its end is
        at least there). A noisy loss, whose trace would hold nearly every step, stays small."""
        if self.in_plateau:
            since = self._partial[1]
        elif self.plateaus:
            since = self.plateaus[-1].end_step
        else:
            return
        keep = np.searchsorted(self._trace_steps, since)
        self._trace_steps, self._trace_losses = self._trace_steps[keep:], self._trace_losses[keep:]

    def _width(self, steps_per_t: float) -> int:
        return max(1, round(self.window_t / self.bins * steps_per_t))  # steps a bin

    def reach(self, steps_per_t: float) -> int:
        """How many steps before the first of a block a plateau found in that block can have
        started: a window of bins, the last of them possibly begun in the block before."""
        return (self.bins + 1) * self._width(steps_per_t)

    def _on_bins(self, steps: np.ndarray, lows: np.ndarray, highs: np.ndarray, steps_per_t: float,
                 on_event=None):
        """Complete bins in order, each closing the window of the last `bins` bins: a plateau
        starts at the first flat window, ends at the first that is not, and after an end only
        windows of later bins count. Every window of the block is judged once, by numpy; each
        event then finds the next one by a binary search (a noisy loss with thousands of events
        a block costs no more than a smooth one)."""
        held = len(self._window)  # bins of earlier blocks still in a window (after the last end)
        window = np.array(self._window, dtype=float).reshape(-1, 3)
        steps = np.concatenate([window[:, 0].astype(np.int64), steps])
        lows, highs = np.concatenate([window[:, 1], lows]), np.concatenate([window[:, 2], highs])
        flat = np.zeros(len(steps), dtype=bool)  # flat[e]: the window of bins e − bins + 1 .. e
        if len(steps) >= self.bins:
            low, high = sliding(np.minimum, lows, self.bins), sliding(np.maximum, highs, self.bins)
            flat[self.bins - 1:] = high - low <= self._tolerance(low)
        starts, ends = np.flatnonzero(flat), np.flatnonzero(~flat)
        events, at, fresh = [], held, -1  # fresh: the last end; windows must begin after it
        while True:
            candidates, lowest = (ends, at) if self.in_plateau else \
                (starts, max(at, fresh + self.bins))
            k = np.searchsorted(candidates, lowest)
            if k == len(candidates):
                break
            e = int(candidates[k])
            if self.in_plateau:
                events.append(("end", self._end(int(steps[e]), steps_per_t)))
                fresh = e
            else:
                first = e - self.bins + 1
                level = float(lows[first:e + 1].min() + highs[first:e + 1].max()) / 2
                events.append(("start", self._start(int(steps[first]), level, steps_per_t)))
            if on_event is not None:
                on_event(*events[-1])
            at = e + 1
        keep = max(len(steps) - self.bins, fresh + 1)  # the next windows' bins: after the last end
        self._window.clear()
        self._window.extend(zip(steps[keep:].tolist(), lows[keep:].tolist(),
                                highs[keep:].tolist()))
        return events

    def _end(self, step: int, steps_per_t: float) -> Plateau:
        plateau = self.plateaus[-1]
        plateau.end_step, plateau.end_t = step, step / steps_per_t
        self.in_plateau = False
        return plateau

    def _start(self, start: int, level: float, steps_per_t: float) -> Plateau:
        plateau = Plateau(start_step=start, start_t=start / steps_per_t, level=level)
        if self.plateaus:
            previous = self.plateaus[-1]
            level = midpoint(previous.level, plateau.level)
            plateau.jump_step = self.crossing(level, after=previous.end_step)
            plateau.jump_t = None if plateau.jump_step is None else plateau.jump_step / steps_per_t
        self.plateaus.append(plateau)
        self.in_plateau = True
        return plateau

    def _extend_trace(self, first_step: int, losses: np.ndarray, log_losses=None) -> None:
        """Keep the steps at which log L enters a new bin of width `trace_resolution`."""
        if log_losses is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_losses = np.log(losses)
        with np.errstate(invalid="ignore"):
            bins = np.floor(log_losses / self.trace_resolution)
        previous = np.concatenate([[self._last if self._last is not None else np.nan], bins[:-1]])
        keep = np.flatnonzero(bins != previous)
        self._last = float(bins[-1])
        self._trace_steps = np.concatenate([self._trace_steps, first_step + keep])
        self._trace_losses = np.concatenate([self._trace_losses, losses[keep]])

    @property
    def trace(self) -> tuple[np.ndarray, np.ndarray]:
        """The compressed loss record since the last plateau's end: (steps, losses), a sample
        whenever log L moved by `trace_resolution`."""
        return self._trace_steps, self._trace_losses

    def crossing(self, level: float, after: int = 0) -> int | None:
        """The first step at or after `after` whose loss is ≤ `level` (to the trace's resolution),
        searched in growing chunks: the crossing is usually close."""
        steps, losses = self.trace
        at, size = int(np.searchsorted(steps, after)), 256
        while at < len(steps):
            below = np.flatnonzero(losses[at:at + size] <= level)
            if len(below):
                return int(steps[at + below[0]])
            at, size = at + size, 2 * size
        return None

    def state_dict(self) -> dict:
        """Plain Python and tensors, so checkpoints load with torch.load(weights_only=True)."""
        return {"plateaus": [asdict(p) for p in self.plateaus], "in_plateau": self.in_plateau,
                "loss0": self.loss0, "window": [tuple(map(float, b)) for b in self._window],
                "partial": None if self._partial is None else tuple(map(float, self._partial)),
                "last": self._last, "trace_steps": torch.from_numpy(self._trace_steps),
                "trace_losses": torch.from_numpy(self._trace_losses)}

    def load_state_dict(self, state: dict) -> None:
        self.plateaus = [Plateau(**p) for p in state["plateaus"]]
        self.in_plateau, self.loss0 = state["in_plateau"], state["loss0"]
        self._window = deque((tuple(b) for b in state["window"]), maxlen=self.bins)
        self._partial = None if state["partial"] is None else tuple(state["partial"])
        self._trace_steps = state["trace_steps"].numpy()
        self._trace_losses = state["trace_losses"].numpy()
        self._last = state["last"]



class PlateauLogger(NetworkCallback):
    """Detects plateaus during training (a `PlateauDetector` per network); logs each start and end
    as a text event (`events/plateaus`); keeps the loss, β and support (|β_i| >
    `active_threshold`) of each, taken at the recorded step nearest the plateau's middle, and
    reports them in summary.json.

    A plateau's records are those of its recorded steps whose index step // record_every is a
    multiple of a stride, doubled whenever more than KEEP would be kept; the records of the last
    `detector.reach` steps are kept too, for a plateau found a window after it began. So the
    findings do not depend on where blocks of steps begin and end."""

    KEEP = 64  # recorded β kept per plateau: memory KEEP·d at most

    def __init__(self, *, window_t: float, rtol: float, atol: float, active_threshold: float):
        PlateauDetector(window_t=window_t, rtol=rtol, atol=atol)  # the settings' checks, now
        self.settings = dict(window_t=window_t, rtol=rtol, atol=atol)
        self.active_threshold = active_threshold

    def start(self, replica, task):
        detector = PlateauDetector(**self.settings)
        return _Plateaus(replica, detector, self.active_threshold, self.KEEP)


RecordSet = tuple[np.ndarray, np.ndarray, np.ndarray]  # recorded steps, their losses, β (rows)


def no_records(d: int) -> RecordSet:
    return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, d))


def select(records: RecordSet, mask: np.ndarray) -> RecordSet:
    return tuple(x[mask] for x in records)


def join(a: RecordSet, b: RecordSet) -> RecordSet:
    return tuple(np.concatenate([x, y]) for x, y in zip(a, b))


class _Plateaus:
    """One network's plateaus (see PlateauLogger)."""

    def __init__(self, replica, detector: PlateauDetector, active_threshold: float, keep: int):
        self.replica, self.detector = replica, detector
        self.active_threshold, self.limit = active_threshold, keep
        d = replica.history.d
        self._kept, self._stride, self._recent = no_records(d), 1, no_records(d)

    @property
    def plateaus(self) -> list[Plateau]:
        return self.detector.plateaus

    def update(self, trajectory) -> None:
        block = (trajectory.steps, trajectory.record_losses, trajectory.betas)
        every, texts = self.replica.record_every, []

        def on_event(kind: str, plateau: Plateau) -> None:
            k = len(self.plateaus) - 1
            if kind == "start":
                self._kept, self._stride = no_records(self.replica.history.d), 1
                self._keep(self._recent, plateau, every)
                texts.append((f"plateau {k} starts at t = {plateau.start_t:.4g} (step "
                              f"{plateau.start_step}), L = {plateau.level:.4e}",
                              plateau.start_step))
            else:
                self._keep(block, plateau, every)
                self._settle(plateau)
                texts.append((f"plateau {k} ends at t = {plateau.end_t:.4g} (step "
                              f"{plateau.end_step}), support "
                              f"{{{', '.join(map(str, plateau.support))}}}", plateau.end_step))

        self.detector.update(trajectory.first_step, trajectory.losses, self.replica.steps_per_t,
                             on_event, trajectory.log_losses)
        if self.replica.tensorboard is not None:
            for text, step in texts:
                self.replica.tensorboard["run"].text("events/plateaus", text, step)
        if self.detector.in_plateau:
            self._keep(block, self.plateaus[-1], every)
        since = trajectory.end_step - self.detector.reach(self.replica.steps_per_t)
        self._recent = join(select(self._recent, self._recent[0] >= since),
                            select(block, block[0] >= since))

    def end(self, task) -> None:
        if self.detector.in_plateau:
            self._settle(self.plateaus[-1], end=self.replica.steps_done)

    def _keep(self, records: RecordSet, plateau: Plateau, every: int) -> None:
        steps = records[0]
        inside = (steps >= plateau.start_step) & (steps < (plateau.end_step or np.inf))
        thinned = inside & (steps // every % self._stride == 0)
        self._kept = join(self._kept, select(records, thinned))
        while len(self._kept[0]) > self.limit:
            self._stride *= 2
            self._kept = select(self._kept, self._kept[0] // every % self._stride == 0)

    def _settle(self, plateau: Plateau, end: int | None = None) -> None:
        """Loss, β and support of a finished plateau: the record nearest its middle."""
        steps, losses, betas = self._kept
        if not len(steps):
            return
        middle = (plateau.start_step + (plateau.end_step if end is None else end)) / 2
        j = int(np.argmin(np.abs(steps - middle)))
        plateau.level = float(losses[j])
        plateau.beta = betas[j].tolist()
        plateau.support = np.flatnonzero(np.abs(betas[j]) > self.active_threshold).tolist()

    def summary(self) -> dict:
        return {"plateaus": [asdict(p) for p in self.plateaus]}

    def state_dict(self) -> dict:
        """The records as tensors: as lists of floats, 64 replicas' 64 records of d = 1000 took
        seconds to pickle."""
        return {"detector": self.detector.state_dict(), "stride": self._stride,
                "kept": [torch.from_numpy(x) for x in self._kept],
                "recent": [torch.from_numpy(x) for x in self._recent]}

    def load_state_dict(self, state: dict) -> None:
        self.detector.load_state_dict(state["detector"])
        self._stride = state["stride"]
        self._kept = tuple(x.numpy() for x in state["kept"])
        self._recent = tuple(x.numpy() for x in state["recent"])
