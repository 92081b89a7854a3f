"""The fused CPU engine: a whole block of GD/SGD steps of a power-form network in one compiled loop.

On small problems a step is a few thousand multiply-adds, and each PyTorch operation costs more
than that in dispatch alone (about 3 µs here, six a step). Networks with β = a^L − b^L whose GD
step is a ← a − c·h·a^(L−1), b ← b + c·h·b^(L−1) (h = lr·∇L(β); `DiagonalNetwork.power_form`)
are stepped here instead, by numba, with no per-step dispatch: u ⊙ v (a, b = p, q, L = 2, c = 1)
and w₊^L − w₋^L (c = L). Sums may be reassociated (vectorised) and fused, so results agree with
the PyTorch path to rounding, not bit for bit; a run is bit-for-bit reproducible on one machine.
"""

import numba
import numpy as np


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def power_steps(X, y, a, b, depth, c, scale, perms, batch, pos, shuffle, first, every, losses, rec_a, rec_b):
    """len(losses) steps from global step `first`, updating a and b in place.

    Step j: β = a^L − b^L; at steps that are multiples of `every`, a and b go into rec_a, rec_b;
    if `shuffle` and the epoch has no full batch left, the next row order perms[e + 1] starts; the
    residual r = Xβ − y over all n rows (in the epoch's order) gives losses[j] = ‖r‖²/2n; the
    gradient is taken over rows pos .. pos + batch of that order (GD: all rows, no shuffle) and
    scaled by `scale` = lr / batch. Returns (records written, epochs started, final pos).
    """
    n, d = X.shape
    beta, r, g = np.empty(d, X.dtype), np.empty(n, X.dtype), np.empty(d, X.dtype)
    records, epoch = 0, 0
    for j in range(losses.shape[0]):
        for i in range(d):
            beta[i] = a[i] ** depth - b[i] ** depth
        if (first + j) % every == 0:
            rec_a[records] = a
            rec_b[records] = b
            records += 1
        if shuffle and pos + batch > n:
            epoch += 1
            pos = 0
        order = perms[epoch]
        loss = 0.0
        for m in range(n):
            row = order[m]
            s = -y[row]
            for i in range(d):
                s += X[row, i] * beta[i]
            r[m] = s
            loss += s * s
        losses[j] = loss / (2 * n)
        g[:] = 0.0
        for m in range(pos, pos + batch):
            row, rm = order[m], r[m]
            for i in range(d):
                g[i] += X[row, i] * rm
        if shuffle:
            pos += batch
        for i in range(d):
            h = c * scale * g[i]
            a[i] -= h * a[i] ** (depth - 1)
            b[i] += h * b[i] ** (depth - 1)
    return records, epoch, pos
