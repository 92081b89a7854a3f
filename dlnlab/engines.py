"""Engines: a block of GD/SGD steps of a stack of networks (docs/design.md, "Engines").

One interface, two engines. Each takes a `Stack` of E networks sharing X and y, the steps each row
takes in the block (`ends`: a row that has reached its own step count, finished or diverged, takes
none), and returns the block's `Steps`: every step's loss for each row and each row's tensors at
its recorded steps (global steps that are multiples of its `every`).

- `TorchEngine`: tensor operations, on any device: per step two mat-vecs for one network, two
  matrix products for a stack (each network a row). Any model: power-form ones step in preallocated
  buffers, others through their `descend` (closed form or autograd; dlnlab.stack).
- `FusedEngine`: the compiled loop of dlnlab/kernel.py, on the CPU, for power-form models: no
  per-step dispatch, so small problems run at the speed of their arithmetic.

Both share the `Sampler`, so GD and SGD take the same batches in either engine (the engines agree
to rounding, tested), and both step only the rows still running: when a row's end falls inside a
block the rest of the block steps a gathered copy of the others, written back at its end.
"""

from dataclasses import dataclass

import numpy as np
import torch

from dlnlab.stack import Stack


class Sampler:
    """Which rows of X each step's gradient sums over. GD (batch None): all n, in order. SGD: random
    reshuffling, each epoch a fresh permutation of the n rows (drawn on X's device from a seeded
    generator) cut into batches of `batch` rows, the remainder dropped. The step's loss is always
    the full-data loss."""

    def __init__(self, n: int, batch: int | None, seed: int, device: torch.device):
        self.n, self.batch, self.shuffle = n, batch or n, batch is not None
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.order = torch.arange(n, device=device)
        self.pos = n if self.shuffle else 0  # no epoch begun: the first step starts one

    def orders(self, k: int) -> tuple[torch.Tensor, int]:
        """The row orders a block of k steps may use (epochs, n) (the first: the current one), and
        where in the current one it starts."""
        if not self.shuffle:
            return self.order[None], 0
        per_epoch = self.n // self.batch
        draws = max(0, -(-(k - (self.n - self.pos) // self.batch) // per_epoch))
        new = [torch.randperm(self.n, generator=self.generator, device=self.order.device)
               for _ in range(draws)]
        return torch.stack([self.order, *new]), self.pos

    def advance(self, orders: torch.Tensor, epoch: int, pos: int) -> None:
        """After a block: the order of its last epoch and the position reached in it."""
        if self.shuffle:
            self.order, self.pos = orders[epoch].clone(), pos

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.pos = state["order"].to(self.order.device), state["pos"]


@dataclass
class Steps:
    """A block of steps as an engine returns it."""

    losses: torch.Tensor  # (E, k): row e's L(β) at steps first .. first + ends[e] − 1, before each
    record_steps: list[np.ndarray]  # row e's recorded global steps
    betas: list[torch.Tensor]  # row e's β at them (a row each)
    recorded: list[dict[str, torch.Tensor]]  # row e's parameters at them, by name
    h_max: torch.Tensor | None = None  # (E, k): row e's ‖h‖∞ at each step, h = lr·∇L_B(β) as
    # descend(h) takes it (NaN where the row took no step); at depth 2, a ← a(1 − c·h): a step
    # with c·|h_i| ≥ 1 flips a sign (docs/large-steps.md §4)


def recorded_steps(first: int, end: int, every: int) -> np.ndarray:
    """The global steps in [first, first + end) that are multiples of `every`."""
    return np.arange(first + (-first) % every, first + end, every, dtype=np.int64)


def segments(ends: list[int]) -> list[tuple[int, int, list[int]]]:
    """(start, stop, rows) stretches of a block over which the same rows step."""
    cuts = sorted({0, *ends})
    return [(a, b, [e for e, end in enumerate(ends) if end > a]) for a, b in zip(cuts, cuts[1:])]


class TorchEngine:
    """Tensor operations on X's device; see the module docstring."""

    name = "torch"

    def run(self, stack: Stack, X: torch.Tensor, y: torch.Tensor, sampler: Sampler, first: int,
            ends: list[int], every: list[int], lrs: list[float]) -> Steps:
        k, E = max(ends), len(stack)
        everything = stack.stacked()
        names = [name for name, _ in stack.network.named_parameters()]
        losses = X.new_full((E, k), float("nan"))
        h_max = X.new_full((E, k), float("nan"))
        snapshots: list[tuple[int, list[int], dict]] = []  # (j, rows, their β and parameters)
        orders, pos = sampler.orders(k)
        epoch = 0
        with torch.no_grad():
            for start, stop, rows in segments(ends):
                whole = len(rows) == E
                values = everything if whole else {n: t[rows] for n, t in everything.items()}
                records = {j: [r for r, e in enumerate(rows) if (first + j) % every[e] == 0]
                           for j in range(start, stop)}
                records = {j: r for j, r in records.items() if r}
                scale = [lrs[e] / sampler.batch for e in rows]
                epoch, pos = self._steps(stack, values, names, X, y, orders, epoch, pos, sampler,
                                         start, stop, scale, losses, h_max, rows, records,
                                         snapshots)
                if not whole:
                    for n, t in everything.items():
                        t[rows] = values[n]
        sampler.advance(orders, epoch, pos)
        recorded, betas, steps = [], [], []
        empty = {**{n: everything[n][:0] for n in names}, "β": X.new_empty((0, X.shape[1]))}
        for e in range(E):
            at = [(rows.index(e), snap) for j, rows, snap in snapshots
                  if e in rows and (first + j) % every[e] == 0]
            row = {n: torch.stack([snap[n][i] for i, snap in at]) if at else empty[n].clone()
                   for n in empty}
            betas.append(row.pop("β"))
            recorded.append(row)
            steps.append(recorded_steps(first, ends[e], every[e]))
        return Steps(losses, steps, betas, recorded, h_max)

    @staticmethod
    def _steps(stack, values, names, X, y, orders, epoch, pos, sampler, start, stop, scale,
               losses, h_max, rows, records, snapshots):
        """Steps start .. stop − 1 of the rows `rows` (tensors `values`), two products each."""
        m, (n, d) = len(rows), X.shape
        beta_of, descend = _operations(stack, values)
        residuals, H, absolute = X.new_empty((m, n)), X.new_empty((m, d)), X.new_empty((m, d))
        block = X.new_empty((stop - start, m))  # ‖r‖² of each row at each step
        tops = X.new_empty((stop - start, m))  # ‖h‖∞ of each row at each step
        uniform = len(set(scale)) == 1
        alpha, lr = (scale[0] if uniform else 1.0), X.new_tensor(scale)[:, None]
        batch, shuffle = sampler.batch, sampler.shuffle
        if shuffle:  # the batch's rows of X and of the residuals, gathered each step
            Xb, Rb = X.new_empty((batch, d)), X.new_empty((m, batch))
        addmm, vecdot = torch.addmm, torch.linalg.vecdot
        for j in range(start, stop):
            if shuffle and pos + batch > n:
                epoch, pos = epoch + 1, 0
            B = beta_of()
            if j in records:
                state = {"β": B.clone(), **{name: values[name].clone() for name in names}}
                snapshots.append((j, rows, state))
            R = addmm(y, B, X.T, beta=-1, out=residuals)  # a row of Xβ − y per network
            vecdot(R, R, out=block[j - start])
            if shuffle:
                batch_rows = orders[epoch, pos:pos + batch]
                torch.index_select(X, 0, batch_rows, out=Xb)
                torch.index_select(R, 1, batch_rows, out=Rb)
                addmm(H, Rb, Xb, beta=0, alpha=alpha, out=H)
            else:
                addmm(H, R, X, beta=0, alpha=alpha, out=H)
            if not uniform:
                H.mul_(lr)
            # ‖h‖∞ as abs then amax: vector_norm(inf) is a slow, unvectorised reduction
            torch.amax(torch.abs(H, out=absolute), dim=1, out=tops[j - start])
            descend(H)
            if shuffle:
                pos += batch
        losses[rows, start:stop] = block.T * (0.5 / n)
        h_max[rows, start:stop] = tops.T
        return epoch, pos


def _operations(stack: Stack, values: dict[str, torch.Tensor]):
    """beta() and descend(H) for the engine's loop: a power-form model's in preallocated buffers
    (a fresh E × d tensor every step costs the page faults of a new allocation), others' own."""
    form = stack.models[0].power_form()
    if form is None:
        return stack.operations(values)
    a, b, depth, c = values[form[0]], values[form[1]], form[2], form[3]
    out, tmp = torch.empty_like(a), torch.empty_like(a)

    def beta():
        if depth == 2:
            return torch.mul(a, a, out=out).addcmul_(b, b, value=-1)
        return torch.pow(a, depth, out=out).sub_(torch.pow(b, depth, out=tmp))

    def descend(h):
        for w, sign in ((a, -1), (b, 1)):
            power = w if depth == 2 else torch.pow(w, depth - 1, out=tmp)
            w.addcmul_(h, power, value=sign * c)
    return beta, descend


class FusedEngine:
    """dlnlab/kernel.py's compiled loop, on the CPU, for power-form models (module docstring)."""

    name = "fused"

    def run(self, stack: Stack, X: torch.Tensor, y: torch.Tensor, sampler: Sampler, first: int,
            ends: list[int], every: list[int], lrs: list[float]) -> Steps:
        from dlnlab import kernel  # numba compiles on first use (cached on disk after)

        k, E = max(ends), len(stack)
        a_name, b_name, depth, c = stack.models[0].power_form()
        values = stack.stacked()
        a, b = values[a_name].numpy(), values[b_name].numpy()
        orders, pos = sampler.orders(k)
        dtype = a.dtype
        losses = np.full((k, E), np.nan, dtype)
        counts = np.zeros(E, np.int64)
        h_max = np.full((k, E), np.nan, dtype)
        rec_beta, rec_a, rec_b = (np.empty((E, k // min(every) + 1, a.shape[1]), dtype)
                                  for _ in range(3))
        epoch, pos = kernel.power_steps(
            kernel.Problem(X.numpy(), y.numpy()),
            kernel.Networks(a, b, depth, c, np.array(lrs, dtype) / sampler.batch, np.array(ends)),
            kernel.Batches(orders.numpy(), sampler.batch, pos, sampler.shuffle),
            kernel.Records(first, np.array(every), losses, rec_beta, rec_a, rec_b, counts), h_max)
        sampler.advance(orders, epoch, pos)
        recorded = [{a_name: torch.from_numpy(rec_a[e, :counts[e]]),
                     b_name: torch.from_numpy(rec_b[e, :counts[e]])} for e in range(E)]
        betas = [torch.from_numpy(rec_beta[e, :counts[e]]) for e in range(E)]
        steps = [recorded_steps(first, ends[e], every[e]) for e in range(E)]
        return Steps(torch.from_numpy(np.ascontiguousarray(losses.T)), steps, betas, recorded,
                     torch.from_numpy(np.ascontiguousarray(h_max.T)))


ENGINES = {"torch": TorchEngine, "fused": FusedEngine}
