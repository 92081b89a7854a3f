"""The plateau detector driven by scripted loss sequences, as Lightning tests its own callbacks."""

import math
import pickle

import numpy as np
import pytest

from dlnlab.callbacks import PlateauDetector
from dlnlab.callbacks.plateaus import binned, midpoint, sliding

STEPS_PER_T = 1000  # 1000 optimiser steps per unit of accelerated time


def feed(detector, losses, block=250):
    events = []
    for start in range(0, len(losses), block):
        events += detector.update(start, np.asarray(losses[start:start + block]), STEPS_PER_T)
    return events


def staircase(levels, jumps, total, width=0.0):
    """Loss levels joined at the given steps, by a step (width 0) or a smooth sigmoid in log
    scale."""
    steps = np.arange(total)
    log_loss = np.full(total, np.log(levels[0]))
    for (a, b), at in zip(zip(levels[:-1], levels[1:]), jumps):
        shape = (
            (steps >= at).astype(float) if width == 0 else 1 / (1 + np.exp(-(steps - at) / width))
        )
        log_loss += (np.log(b) - np.log(a)) * shape
    return np.exp(log_loss)


def test_flat_loss_is_one_open_plateau():
    detector = PlateauDetector()
    events = feed(detector, np.full(3000, 0.5))
    assert [kind for kind, _ in events] == ["start"]
    (plateau,) = detector.plateaus
    assert plateau.start_step == 0 and plateau.end_step is None and plateau.level == 0.5


def test_staircase_gives_each_plateau_with_its_jump():
    losses = staircase([1.0, 0.1, 0.01], jumps=[1000, 2500], total=4000)
    detector = PlateauDetector(window_t=0.05, bins=8)  # windows of 50 steps, bins of 6
    feed(detector, losses)
    assert [p.level for p in detector.plateaus] == pytest.approx([1.0, 0.1, 0.01])
    first, second, third = detector.plateaus
    assert first.end_step == pytest.approx(1000, abs=6) and second.start_step == pytest.approx(
        1000, abs=6
    )
    assert second.end_step == pytest.approx(2500, abs=6) and third.end_step is None
    assert second.jump_step == 1000 and third.jump_step == 2500
    assert second.jump_t == pytest.approx(1.0) and third.jump_t == pytest.approx(2.5)


def test_smooth_jumps_are_timed_at_the_middle_of_the_drop():
    """A sigmoid in log L from a to b falls to (a + b)/2 at centre + width·logit(σ),
    σ = log(2a/(a + b)) / log(a/b): the jump's time is that step."""
    losses = staircase([1.0, 0.05, 1e-3], jumps=[1200, 3100], total=5000, width=5)
    detector = PlateauDetector()
    feed(detector, losses)
    assert len(detector.plateaus) == 3
    for plateau, (a, b, centre) in zip(
        detector.plateaus[1:], [(1.0, 0.05, 1200), (0.05, 1e-3, 3100)]
    ):
        sigma = np.log(2 * a / (a + b)) / np.log(a / b)
        assert plateau.jump_step == math.ceil(centre + 5 * np.log(sigma / (1 - sigma)))


def test_noise_below_the_tolerance_does_not_split_plateaus():
    rng = np.random.default_rng(0)
    losses = staircase([1.0, 0.1, 0.01], jumps=[1000, 2500], total=4000) * np.exp(
        rng.uniform(-0.005, 0.005, 4000)
    )
    detector = PlateauDetector(rtol=0.02)
    feed(detector, losses)
    assert [round(p.level, 2) for p in detector.plateaus] == [1.0, 0.1, 0.01]


def test_a_plateau_shorter_than_the_window_is_part_of_the_jump():
    losses = staircase(
        [1.0, 0.3, 0.01], jumps=[1000, 1030], total=3000
    )  # 30 steps < 50-step window
    detector = PlateauDetector(window_t=0.05)
    feed(detector, losses)
    assert [p.level for p in detector.plateaus] == pytest.approx([1.0, 0.01])
    assert detector.plateaus[1].jump_step == 1000  # 0.3 is already below the middle of 1 and 0.01


def test_slow_drift_stays_on_the_plateau():
    """The next coordinate growing before its jump: log L drifting by 1% per window is not a
    jump."""
    steps = np.arange(3000)
    losses = np.exp(-0.0002 * steps)  # 1% per 50 steps, under rtol = 2%
    detector = PlateauDetector(rtol=0.02)
    feed(detector, losses)
    assert len(detector.plateaus) == 1 and detector.plateaus[0].end_step is None


def test_approach_to_zero_loss_ends_on_a_plateau():
    steps = np.arange(6000)
    losses = np.where(
        steps < 1000, 1.0, np.exp(-(steps - 1000) / 40.0)
    )  # to 1e-54: exponential convergence
    detector = PlateauDetector(atol=1e-10)
    feed(detector, losses)
    assert len(detector.plateaus) == 2 and detector.plateaus[1].end_step is None
    assert detector.plateaus[1].level < 1e-9


def plateaus_by_definition(losses, window_t=0.05, rtol=0.02, atol=1e-10, bins=8):
    """(start, end) steps of the plateaus, straight from the definition, one complete bin at a
    time."""
    width = max(1, round(window_t / bins * STEPS_PER_T))
    window, plateaus, inside = [], [], False
    for start in range(0, len(losses) - width + 1, width):
        window = (
            window
            + [(start, losses[start : start + width].min(), losses[start : start + width].max())]
        )[-bins:]
        low, high = min(b[1] for b in window), max(b[2] for b in window)
        flat = len(window) == bins and high - low <= rtol * low + atol * losses[0]
        if inside and not flat:
            plateaus[-1][1], inside, window = start, False, []
        elif flat and not inside:
            plateaus.append([window[0][0], None])
            inside = True
    return [tuple(p) for p in plateaus]


@pytest.mark.parametrize("seed", range(20))
def test_plateaus_are_the_definitions_on_random_noisy_staircases(seed):
    """The vectorised detector against the definition checked bin by bin, on staircases of random
    levels, jump times and widths, with noise around the tolerance, fed in blocks of random
    length."""
    rng = np.random.default_rng(seed)
    levels = np.exp(-np.sort(rng.uniform(0, 12, rng.integers(2, 7))))
    total = int(rng.integers(2000, 12000))
    with np.errstate(over="ignore"):  # the sigmoid far from its jump
        losses = staircase(
            levels,
            np.sort(rng.integers(0, total, len(levels) - 1)),
            total,
            width=rng.choice([0, 3, 40]),
        )
    losses *= 1 + rng.choice([0, 0.002, 0.006]) * rng.standard_normal(
        total
    )  # a window's range: ~4σ, near rtol
    detector = PlateauDetector()
    feed(detector, losses, block=int(rng.integers(1, 3000)))
    assert [(p.start_step, p.end_step) for p in detector.plateaus] == plateaus_by_definition(losses)


@pytest.mark.parametrize("block", [1, 7, 100, 5000])
def test_results_do_not_depend_on_the_block_size(block):
    losses = staircase([1.0, 0.05, 1e-3], jumps=[1200, 3100], total=5000, width=5)
    reference = PlateauDetector()
    feed(reference, losses, block=5000)
    detector = PlateauDetector()
    feed(detector, losses, block=block)
    assert detector.plateaus == reference.plateaus


def test_state_survives_a_checkpoint_round_trip():
    losses = staircase([1.0, 0.05, 1e-3], jumps=[1200, 3100], total=5000, width=5)
    uninterrupted = PlateauDetector()
    feed(uninterrupted, losses)
    first = PlateauDetector()
    feed(first, losses[:2000])
    resumed = PlateauDetector()
    resumed.load_state_dict(
        pickle.loads(pickle.dumps(first.state_dict()))
    )  # as torch.save stores it
    for start in range(2000, 5000, 250):
        resumed.update(start, losses[start:start + 250], STEPS_PER_T)
    assert resumed.plateaus == uninterrupted.plateaus


def test_the_midpoint_is_the_middle_of_the_drop():
    assert midpoint(0.04, 0.01) == pytest.approx(0.025)
    assert midpoint(0.1, 0.0) == pytest.approx(0.05)  # a jump to a zero loss, marked in the jump


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="window_t"):
        PlateauDetector(window_t=0)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 64, 1000])
def test_sliding_extremes_equal_the_direct_reduction_over_each_window(n):
    a = np.random.default_rng(n).standard_normal(n)
    for k in range(1, min(n, 17) + 1):
        windows = np.lib.stride_tricks.sliding_window_view(a, k)
        assert np.array_equal(sliding(np.minimum, a, k), windows.min(axis=1)), k
        assert np.array_equal(sliding(np.maximum, a, k), windows.max(axis=1)), k


@pytest.mark.parametrize("width", [1, 2, 3, 8, 16, 17, 40])
def test_binned_extremes_equal_reduceat(width):
    rng = np.random.default_rng(width)
    for n in (1, 2, width, width + 1, 5 * width + 3, 1000):
        a = rng.standard_normal(n)
        offset = int(rng.integers(0, width))
        starts = np.arange(offset, n, width)
        if not len(starts) or starts[0]:
            starts = np.concatenate([[0], starts])
        for op in (np.minimum, np.maximum):
            assert np.array_equal(binned(op, a, starts), op.reduceat(a, starts)), (n, offset)
