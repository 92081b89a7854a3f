"""The fused CPU engine: a whole block of GD/SGD steps of a power-form network in one compiled loop.

On small problems a step is a few thousand multiply-adds, and each PyTorch operation costs more
than that in dispatch alone (about 3 µs here, six a step). Networks with β = a^L − b^L whose GD
step is a ← a − c·h·a^(L−1), b ← b + c·h·b^(L−1) (h = lr·∇L(β); `DiagonalNetwork.power_form`)
are stepped here instead, by numba, with no per-step dispatch: u ⊙ v (a, b = p, q, L = 2, c = 1)
and w₊^L − w₋^L (c = L), one network or a stack of replicas (dlnlab.replicas) sharing X, y.
Sums may be reassociated (vectorised) and fused, so results agree with the PyTorch path to
rounding, not bit for bit; a run is bit-for-bit reproducible on one machine.
"""

import numba
import numpy as np


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def power_steps(X, y, a, b, depth, c, scales, ends, perms, batch, pos, shuffle, first, every, losses, rec_a, rec_b, counts):
    """len(losses) steps from global step `first` for E networks (rows of a, b, updated in place); row e
    takes the first ends[e] of them, with step size scales[e]·batch.

    Step j, row e: β = a^L − b^L; at global steps that are multiples of every[e], a and b go into
    rec_a[e], rec_b[e] (counts[e] of them); the residual r = Xβ − y over all n rows in the epoch's
    order gives losses[j, e] = ‖r‖²/2n; the gradient is taken over rows pos .. pos + batch of that
    order and scaled by scales[e] = lr / batch. With `shuffle` (SGD), a step that finds no full batch
    left in the epoch starts the next row order perms[epoch + 1]; GD takes all rows, in order.
    Returns (epochs started, final pos).
    """
    n, d = X.shape
    beta, r, g = np.empty(d, X.dtype), np.empty(n, X.dtype), np.empty(d, X.dtype)
    epoch = 0
    for j in range(losses.shape[0]):
        if shuffle and pos + batch > n:
            epoch += 1
            pos = 0
        order = perms[epoch]
        for e in range(a.shape[0]):
            if j >= ends[e]:
                continue
            ae, be = a[e], b[e]
            for i in range(d):
                beta[i] = ae[i] ** depth - be[i] ** depth
            if (first + j) % every[e] == 0:
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
        if shuffle:
            pos += batch
    return epoch, pos
