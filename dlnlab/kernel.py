"""The fused engine's loop: a block of GD/SGD steps of a stack of power-form networks, compiled.

On small problems a step is a few thousand multiply-adds, and each PyTorch operation costs more
than that in dispatch alone. Networks with β = a^L − b^L whose GD step is a ← a − c·h·a^(L−1),
b ← b + c·h·b^(L−1) (h = lr·∇L(β); docs/theory.md §2, `DiagonalNetwork.power_form`) are stepped
here by numba with no per-step dispatch: u ⊙ v (a, b = p, q, L = 2, c = 1) and w₊^L − w₋^L (c = L).
Sums may be reassociated (vectorised) and fused, so results agree with the torch engine to
rounding, not bit for bit; a run is bit-for-bit reproducible on one machine.

The arguments come in four named groups (namedtuples, which numba compiles like tuples).
"""

from collections import namedtuple

import numba
import numpy as np

Problem = namedtuple("Problem", "X y")  # X (n, d), y (n,)
Networks = namedtuple("Networks", "a b depth c scales ends")
"""a, b (E, d), updated in place; depth L and c of the power form; scales (E,): row e's step size
over the batch size; ends (E,): row e takes the first ends[e] steps of the block."""
Batches = namedtuple("Batches", "orders batch pos shuffle")
"""orders (epochs, n): row orders of the epochs the block may use (the first is the current one);
batch: rows a step's gradient sums over; pos: where in the current order the block starts; shuffle:
SGD (a step that finds no full batch left starts the next order) or GD (all rows, in order)."""
Records = namedtuple("Records", "first every losses beta a b counts")
"""first: the global step of the block's first step; every (E,): row e records β, a and b at global
steps that are multiples of every[e], into beta[e], a[e], b[e] (counts[e] so far); losses (k, E):
row e's loss at each step before its update.

h_max (k, E), optional (power_steps' last argument): row e's ‖h‖∞ at each step, h = lr·∇L_B(β) as
`DiagonalNetwork.descend(h)` takes it (the update is a ← a(1 − c·h) at depth 2: a sign flips when
c·|h_i| ≥ 1, docs/large-steps.md §4)."""


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def power_steps(problem, networks, batches, records, h_max=None):
    """len(records.losses) steps of the stack; returns (epochs started, final position).

    Step j, row e: β = a^L − b^L; the residual r = Xβ − y over all n rows in the epoch's order gives
    the loss ‖r‖²/2n; the gradient sums over rows pos .. pos + batch of that order, times scales[e]
    (and its largest entry goes to h_max[j, e] when h_max is given: numba compiles the loop without
    it when it is None).
    """
    X, y = problem
    a, b, depth, c, scales, ends = networks
    orders, batch, pos, shuffle = batches
    first, every, losses, rec_beta, rec_a, rec_b, counts = records
    n, d = X.shape
    beta, r, g = np.empty(d, X.dtype), np.empty(n, X.dtype), np.empty(d, X.dtype)
    epoch = 0
    for j in range(losses.shape[0]):
        if shuffle and pos + batch > n:
            epoch += 1
            pos = 0
        order = orders[epoch]
        for e in range(a.shape[0]):
            if j >= ends[e]:
                continue
            ae, be = a[e], b[e]
            for i in range(d):
                beta[i] = ae[i] ** depth - be[i] ** depth
            if (first + j) % every[e] == 0:
                rec_beta[e, counts[e]] = beta
                rec_a[e, counts[e]] = ae
                rec_b[e, counts[e]] = be
                counts[e] += 1
            loss = 0.0
            for m in range(n):
                row = order[m]
                s = -y[row]
                for i in range(d):
                    s += X[row, i] * beta[i]
                r[m] = s
                loss += s * s
            losses[j, e] = loss / (2 * n)
            g[:] = 0.0
            for m in range(pos, pos + batch):
                row, rm = order[m], r[m]
                for i in range(d):
                    g[i] += X[row, i] * rm
            for i in range(d):
                h = c * scales[e] * g[i]
                ae[i] -= h * ae[i] ** (depth - 1)
                be[i] += h * be[i] ** (depth - 1)
            if h_max is not None:
                top = 0.0
                for i in range(d):
                    v = abs(g[i])
                    if not v <= top:  # NaN too
                        top = v
                h_max[j, e] = scales[e] * top
        if shuffle:
            pos += batch
    return epoch, pos
