"""Replicas: a whole sweep (α, initialisation seed, step size) as one run, at matrix-matrix speed.

`model.alpha=[1e-5,1e-20,1e-100]` (likewise `model.shape_seed=[...]`, `optim.lr=[...]`; several lists
give their product, like a Hydra sweep) trains one network per value on the same X, y. Their
parameters are stacked on a leading replica axis, so each step's two mat-vecs become two mat-mats.
Each replica keeps its own clock and its own number of steps to reach run.t_max; one that finishes or
diverges stops updating while the others go on. Every replica is a `DiagonalTask` of its own, whose
model's parameters are views of its row of the stack: the callbacks, the theory and the summary see
it exactly as they see a separate run.
"""

import copy
import itertools

import torch
from omegaconf import DictConfig, OmegaConf

from dlnlab.checks import ConfigError
from dlnlab.models import DiagonalNetwork
from dlnlab.models.base import rebind, tensors, with_tensors
from dlnlab.task import DiagonalTask, Records, _count_optimizer_steps, stack_records, steps_per_call

REPLICABLE = {"model.alpha": float, "model.shape_seed": int, "optim.lr": float}  # may vary between networks on one X, y
BLOCK_BYTES = 2**25  # cap on the loss record of a block (steps × replicas floats): 32 MB


def expand(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """One (name, config) per replica when a key of REPLICABLE holds a list (the product of all lists,
    named like the jobs of a Hydra sweep: `0_model.alpha=1e-05`); [] when none does (a single run)."""
    lists = {}
    for key, kind in REPLICABLE.items():
        value = OmegaConf.select(cfg, key)
        values = list(value) if OmegaConf.is_list(value) else [value]
        if not values:
            raise ConfigError(f"{key}=[] is empty: give a value, or a list of values for one replica each")
        if any(isinstance(v, bool) or not isinstance(v, (int, kind)) for v in values if v is not None):
            raise ConfigError(f"{key}={value!r} must be a{'n integer' if kind is int else ' number'} or a list of "
                              f"them, one replica each (e.g. {key}=[{'0,1,2' if kind is int else '1e-5,1e-20'}])")
        if OmegaConf.is_list(value):
            lists[key] = values
    if not lists:
        return []
    replicas = []
    for i, values in enumerate(itertools.product(*lists.values())):
        replica = copy.deepcopy(cfg)
        for key, value in zip(lists, values):
            OmegaConf.update(replica, key, value)
        replicas.append((f"{i}_" + ",".join(f"{key}={value}" for key, value in zip(lists, values)), replica))
    return replicas


def replica_steps_per_call(n: int, d: int, replicas: int, fused: bool) -> int:
    """Steps per training_step for a stack: as for one network (a block and its callbacks both cost E
    times one network's), with the block's loss record within BLOCK_BYTES."""
    return max(1, min(steps_per_call(n, d, fused), BLOCK_BYTES // (8 * replicas)))


def stack(models: list[DiagonalNetwork]) -> DiagonalNetwork:
    """One module of the models' class holding their parameters and buffers stacked on a leading axis:
    its beta() and _descend() act on every replica at once when they are elementwise in the parameters
    (all diagonal networks are). Checked here on the models' own values, with a clear error if not."""
    first = models[0]
    shapes = [[(name, t.shape) for name, t in tensors(m).items()] for m in models]
    if any(type(m) is not type(first) for m in models) or any(shape != shapes[0] for shape in shapes):
        raise ConfigError("replicas must be the same model with parameters of the same shapes")
    stacked = with_tensors(first, {name: torch.stack([tensors(m)[name].detach() for m in models]) for name in tensors(first)})
    try:
        with torch.no_grad():
            h = torch.rand_like(torch.stack([m.beta() for m in models])) * 1e-3
            trial, singles = copy.deepcopy(stacked), [copy.deepcopy(m) for m in models]
            trial._descend(h)
            for e, single in enumerate(singles):
                single._descend(h[e])
            ok = torch.equal(stacked.beta(), torch.stack([m.beta() for m in models])) and torch.allclose(
                trial.beta(), torch.stack([m.beta() for m in singles]), rtol=1e-12, atol=0)
    except RuntimeError:  # shapes that do not broadcast
        ok = False
    if not ok:
        raise ConfigError(f"{type(first).__name__} cannot be stacked into replicas: its beta() or its step is not "
                          "elementwise in parameters stacked on a leading axis; sweep the values instead "
                          "(dlnlab-train -m model.alpha=1e-5,1e-20)")
    return stacked


class PowerStep:
    """β = a^L − b^L and the GD step a ← a − c·h·a^(L−1), b ← b + c·h·b^(L−1) of a stack of power-form
    networks (`DiagonalNetwork.power_form`), in preallocated buffers: a fresh E × d temporary each step
    (what `beta()` returns) costs the page faults of a new allocation, as much as the products here."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, depth: int, c: float):
        self.a, self.b, self.depth, self.c = a, b, depth, c
        self.out, self.tmp = torch.empty_like(a), torch.empty_like(a)

    def beta(self) -> torch.Tensor:
        if self.depth == 2:
            torch.mul(self.a, self.a, out=self.out)
            return self.out.addcmul_(self.b, self.b, value=-1)
        torch.pow(self.a, self.depth, out=self.out)
        return self.out.sub_(torch.pow(self.b, self.depth, out=self.tmp))

    def descend(self, h: torch.Tensor) -> None:
        for w, sign in ((self.a, -1), (self.b, 1)):
            w.addcmul_(h, w if self.depth == 2 else torch.pow(w, self.depth - 1, out=self.tmp), value=sign * self.c)


class ReplicaTask(DiagonalTask):
    """E replicas (DiagonalTasks sharing X, y, the optimiser and its batches) trained as one stack.

    Rows of the stack are kept in `order` (row → replica): replicas still running first, the one with the
    most steps to go first, so that the rows still stepping are always a prefix and a replica that reaches
    its own step count simply drops off the end of it, mid-block. A replica that diverges is moved out of
    the prefix at the end of its block. After each block every replica that stepped holds its own record
    (`step_losses`, `record_*`, `steps_done`, `status`) for the callbacks, and `ran` lists them.
    """

    def __init__(self, replicas: list[DiagonalTask], steps_per_call: int):
        order = sorted(range(len(replicas)), key=lambda e: -replicas[e].max_steps)
        first = replicas[order[0]]
        super().__init__(stack([replicas[e].model for e in order]), first.X, first.y, lr=first.lr,
                         batch_size=first.batch_size, steps_per_call=steps_per_call, seed=first.seed,
                         divergence_factor=first.divergence_factor, max_steps=first.max_steps, fused=first.fused)
        self.order = order
        self.replicas = replicas  # a plain list: their models are views of the stack, saved with it
        self.longest = self.order[0]
        lrs = [replicas[e].lr for e in self.order]
        self.register_buffer("lrs", None if len(set(lrs)) == 1 else torch.tensor(lrs, dtype=self.X.dtype)[:, None],
                             persistent=False)
        self.ran: list[int] = []
        self._narrowed: dict[int, tuple] = {}

    @property
    def active(self) -> int:
        """How many rows (a prefix of `order`) still step."""
        return sum(self.replicas[e].status == "running" and self.replicas[e].steps_done < self.replicas[e].max_steps
                   for e in self.order)

    def accelerated_time(self, step: int) -> float:
        """The run's clock is its longest replica's (from 0 to run.t_max)."""
        return self.replicas[self.longest].accelerated_time(step)

    def progress(self) -> dict[str, str]:
        head = self.replicas[self.order[0]]
        return {**head.progress(), "running": f"{self.active}/{len(self.replicas)}"}

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._bind()

    def _bind(self) -> None:
        """Point each replica's model at its row of the stack (again after a move to the device or a reorder)."""
        self._narrowed = {}
        for row, e in enumerate(self.order):
            replica = self.replicas[e]
            replica.X, replica.y = self.X, self.y
            for name, t in tensors(self.model).items():
                rebind(replica.model, name, t.detach()[row])

    def _rows(self, m: int):
        """beta() and _descend() of the first m rows of the stack (views; cached)."""
        if m not in self._narrowed:
            views = {name: t.detach()[:m] for name, t in tensors(self.model).items()}
            form = self.model.power_form()
            if form is not None:
                step = PowerStep(views[form[0]], views[form[1]], *form[2:])
                self._narrowed[m] = step.beta, step.descend
            else:
                model = with_tensors(self.model, views)
                self._narrowed[m] = model.beta, model._descend
        return self._narrowed[m]

    def training_step(self, batch, batch_idx):
        first = self.trainer.global_step
        rows = self.active
        k = min(self.steps_per_call, self.replicas[self.order[0]].max_steps - first,
                self.record_cap([self.replicas[e] for e in self.order[:rows]]))
        with torch.no_grad():
            losses, records = self._steps(first, k, rows)
        self.ran = self.order[:rows]
        for row, e in enumerate(self.ran):
            replica = self.replicas[e]
            replica.take(first, losses[:min(k, replica.max_steps - first), row], records[row])
            if replica.status == "running" and self.stop_requested:
                replica.status = "interrupted"
        _count_optimizer_steps(self.trainer, k)
        self.step_losses = self.replicas[self.order[0]].step_losses
        if any(self.replicas[e].status == "diverged" for e in self.ran):
            self._reorder()
        if self.stop_requested:
            self.status = "interrupted"
        elif not self.active:
            self.status = "diverged" if all(r.status == "diverged" for r in self.replicas) else "running"
        self.trainer.should_stop = self.stop_requested or not self.active

    def _reorder(self) -> None:
        """Rows of replicas still running first (most steps to go first), stopped ones after: move the data."""
        order = sorted(self.order, key=lambda e: (self.replicas[e].status != "running", -self.replicas[e].max_steps))
        rows = torch.tensor([self.order.index(e) for e in order], device=self.X.device)
        for t in tensors(self.model).values():
            t.data.copy_(t.data[rows])
        if self.lrs is not None:
            self.lrs.copy_(self.lrs[rows])
        self.order = order
        self._bind()

    def _steps(self, first: int, k: int, rows: int) -> tuple[torch.Tensor, list[Records]]:
        """k steps of the first `rows` rows; row r stops after its replica's own step count. Returns the
        losses (k, rows), valid for row r up to that count, and each row's records. In the fused
        engine (small problems) the kernel steps every row in turn; else two matrix products a step."""
        if self.fused:
            tasks = [self.replicas[e] for e in self.order[:rows]]
            return self.fused_block(first, tasks, [min(k, task.max_steps - first) for task in tasks])
        X, y = self.X, self.y
        n, d = X.shape
        ends = [self.replicas[e].max_steps - first for e in self.order[:rows]]  # non-increasing
        plan: dict[int, list[int]] = {}
        for r, e in enumerate(self.order[:rows]):
            every = self.replicas[e].record_every
            for j in range((-first) % every, min(k, ends[r]), every):
                plan.setdefault(j, []).append(r)
        models = [self.replicas[e].model for e in self.order[:rows]]
        losses, residuals, H = X.new_empty((k, rows)), X.new_empty((rows, n)), X.new_empty((rows, d))
        batch = self.batch_size
        alpha = (1.0 if self.lrs is not None else self.lr) / (batch or n)
        Xt, addmm, vecdot, m = X.T, torch.addmm, torch.linalg.vecdot, 0
        records: list[list] = [[] for _ in range(rows)]
        Xs, ys = self._shuffled or (None, None)
        for j in range(k):
            if not m or ends[m - 1] <= j:  # a replica reached its step count: step the rows before it
                m = sum(end > j for end in ends)
                (beta_of, descend), h = self._rows(m), H[:m]
                scale = None if self.lrs is None else self.lrs[:m]
            B = beta_of()
            for r in plan.get(j, ()):
                records[r].append((first + j, B[r].clone(), models[r].dual()))
            if batch is None:
                R = addmm(y, B, Xt, beta=-1, out=residuals[:m])  # R = Bᵀ X − y, one row per replica
                addmm(h, R, X, beta=0, alpha=alpha, out=h)
            else:
                if self._shuffled is None or self._pos + batch > n:
                    Xs, ys = self._epoch()
                R = addmm(ys, B, Xs.T, beta=-1, out=residuals[:m])
                a = self._pos
                addmm(h, R[:, a:a + batch], Xs[a:a + batch], beta=0, alpha=alpha, out=h)
                self._pos = a + batch
            vecdot(R, R, out=losses[j, :m])  # ‖r‖² of each row (the residuals stay in one buffer, in cache)
            if scale is not None:
                h.mul_(scale)
            descend(h)
        return losses.mul_(0.5 / n), [stack_records(r, X) for r in records]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dlnlab_replicas"] = {
            "order": self.order,
            "replicas": [{"status": r.status, "steps_done": r.steps_done, "initial_loss": r.initial_loss,
                          "diverged_at": r.diverged_at} for r in self.replicas]}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["dlnlab_replicas"]
        self.order = state["order"]
        for replica, saved in zip(self.replicas, state["replicas"]):
            replica.status = "running" if saved["status"] == "interrupted" else saved["status"]  # resumed
            replica.steps_done = saved["steps_done"]
            replica.initial_loss, replica.diverged_at = saved["initial_loss"], saved["diverged_at"]
        if self.lrs is not None:
            self.lrs.copy_(torch.tensor([self.replicas[e].lr for e in self.order], dtype=self.lrs.dtype)[:, None])
