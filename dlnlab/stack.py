"""A stack of E ≥ 1 networks of one class, their tensors on a leading axis (docs/design.md,
"A run is a stack").

A run is a stack: a single run is E = 1, a replica run (dlnlab/replicas.py) E > 1, through the
same task, engines and callbacks. The stack holds every parameter and buffer of its networks
stacked on a leading axis, in `network`, a module of their class; each network's own module keeps
its attributes (α, depth, clock, …) and has its row of the stack as its tensors (views), so its
`beta()`, `dual()` and `time_scale()` are the network's own, live.

How the stack computes β and steps depends on the model, decided once on its own values:
- *row-wise* models (every diagonal network written with elementwise operations: u ⊙ v, w₊^L −
  w₋^L, …) compute on the stacked tensors directly: `network.beta()` is then E rows of β;
- any other (a parameter of shape (L, d) reduced along its first axis, say) runs through
  torch.func: `vmap` over the rows of `functional_call`, its gradient by `vjp`.
"""

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from dlnlab.checks import ConfigError
from dlnlab.models import DiagonalNetwork


def tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers by dotted name."""
    return dict(model.named_parameters()) | dict(model.named_buffers())


def rebind(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Make the parameter (or buffer) `name` of model the tensor `value`: shared, not copied."""
    prefix, _, leaf = name.rpartition(".")
    owner = model.get_submodule(prefix)
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(value.detach(),
                                               requires_grad=owner._parameters[leaf].requires_grad)
    else:
        owner._buffers[leaf] = value


def with_tensors(model: nn.Module, values: dict[str, torch.Tensor]) -> nn.Module:
    """A module of model's class and attributes whose tensors named in `values` are those (shared),
    the others model's own: the structure is copied, no tensor is."""
    view = copy.deepcopy(model, memo={id(t): t for t in tensors(model).values()})
    for name, value in values.items():
        rebind(view, name, value)
    return view


class _Method(nn.Module):
    """Calls a method of the network it wraps: `functional_call` runs `forward`, this runs any."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, method: str, *args):
        return getattr(self.network, method)(*args)


def call(model: nn.Module, values: dict[str, torch.Tensor], method: str, rowwise: bool, *args):
    """`model.<method>(*args)` on rows of tensors stacked on a leading axis (all of model's tensors,
    by name): on the stacked tensors directly for a row-wise model, else row by row by vmap."""
    if rowwise:
        return getattr(with_tensors(model, values), method)(*args)
    names = {f"network.{name}": value for name, value in values.items()}
    return vmap(lambda t, *a: functional_call(_Method(model), t, (method, *a)))(names, *args)


class Stack(nn.Module):
    """E networks of one class with tensors of the same shapes, stacked on a leading axis.

    `network` holds the stacked tensors (what checkpoints save); `models[e]` is network e, its
    tensors views of row e (`bind` renews the views after the stack moved to another device).
    """

    def __init__(self, models: list[DiagonalNetwork]):
        super().__init__()
        first = models[0]
        layout = [(name, t.shape, t.dtype) for name, t in tensors(first).items()]
        for model in models[1:]:
            if type(model) is not type(first) or [(n, t.shape, t.dtype) for n, t in
                                                  tensors(model).items()] != layout:
                raise ConfigError("replicas must be the same model with tensors of the same shapes "
                                  f"and dtypes: {type(model).__name__} differs from the first")
        stacked = {name: torch.stack([tensors(m)[name].detach() for m in models]) for name in
                   tensors(first)}
        self.network = with_tensors(first, stacked)
        self.models = models  # a plain list: their tensors are views of `network`'s, saved there
        self.rowwise = _is_rowwise(models, stacked)
        self.dual_rowwise = _dual_is_rowwise(first)
        if not self.rowwise and len(models) > 1 and not _vmaps(models, stacked):
            raise ConfigError(f"{type(first).__name__} cannot run as replicas: its beta() or "
                              "descend() depends on attributes that differ between the replicas; "
                              "sweep the values instead (dlnlab-train -m model.alpha=1e-5,1e-20)")
        self.bind()

    def __len__(self) -> int:
        return len(self.models)

    def stacked(self) -> dict[str, torch.Tensor]:
        """The stacked tensors by name (rows: networks)."""
        return {name: t.detach() for name, t in tensors(self.network).items()}

    def bind(self) -> None:
        """Point each network's tensors at its row of the stack."""
        for name, t in self.stacked().items():
            for row, model in enumerate(self.models):
                rebind(model, name, t[row])

    def operations(self, values: dict[str, torch.Tensor]) -> tuple[Callable, Callable]:
        """beta() and descend(H) of rows of stacked tensors (all networks alike: network 0's
        attributes), ready to call once a step: β with a row per network, and one GD step in place
        given H = lr·∇L(β), a row each."""
        model = self.models[0]
        if self.rowwise:
            view = with_tensors(model, values)
            return view.beta, view.descend
        return (lambda: call(model, values, "beta", False),
                lambda H: descend(model, values, H, False))

    def dual(self, row: int, values: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """s of network `row` at several states of its parameters (stacked on a leading axis), with
        that network's own attributes (its α, its clock); None for a model without a dual."""
        model = self.models[row]
        if type(model).dual is DiagonalNetwork.dual:
            return None
        with torch.no_grad():
            return call(model, values, "dual", self.dual_rowwise)


def descend(model: DiagonalNetwork, values: dict[str, torch.Tensor], H: torch.Tensor,
            rowwise: bool) -> None:
    """`model.descend` on rows of stacked tensors, in place: directly for a row-wise model; else its
    closed form row by row by vmap, or, without one, autograd's step by torch.func's vjp."""
    if rowwise:
        with_tensors(model, values).descend(H)
    elif type(model).descend is not DiagonalNetwork.descend:
        call(model, values, "descend", False, H)
    else:
        names = {f"network.{name}" for name in dict(model.named_parameters())}
        prefixed = {f"network.{k}": v for k, v in values.items()}
        grads = vmap(lambda t, h: _vjp(model, t, names, h))(prefixed, H)
        for name, grad in grads.items():
            values[name.removeprefix("network.")].sub_(grad)


def _vjp(model, values: dict[str, torch.Tensor], names: set[str], h: torch.Tensor):
    """(∂β/∂θ)ᵀ h for the parameters θ among `values` (the others held fixed), by torch.func."""
    params = {k: v for k, v in values.items() if k in names}
    fixed = {k: v for k, v in values.items() if k not in names}
    _, pullback = vjp(lambda p: functional_call(_Method(model), {**p, **fixed}, ("beta",)), params)
    return pullback(h)[0]


def _is_rowwise(models: list[DiagonalNetwork], stacked: dict[str, torch.Tensor]) -> bool:
    """Whether the models' beta() and descend() act row by row on their stacked tensors, as each
    does on its own (with the first model's attributes): checked on their values and one small
    random step."""
    try:
        with torch.no_grad():
            view = with_tensors(models[0], {k: v.clone() for k, v in stacked.items()})
            singles = [copy.deepcopy(m) for m in models]
            if not _same(view.beta(), [m.beta() for m in singles]):
                return False
            h = torch.rand_like(view.beta()) * 1e-3
            view.descend(h)
            for e, single in enumerate(singles):
                single.descend(h[e])
            return _same(view.beta(), [m.beta() for m in singles])
    except (RuntimeError, IndexError, ValueError):  # shapes that do not broadcast
        return False


def _dual_is_rowwise(model: DiagonalNetwork) -> bool:
    """Whether model.dual() acts row by row on its tensors stacked (twice) on a leading axis."""
    if type(model).dual is DiagonalNetwork.dual:
        return True
    try:
        with torch.no_grad():
            view = with_tensors(model, {k: torch.stack([v.detach()] * 2) for k, v in
                                        tensors(model).items()})
            return _same(view.dual(), [model.dual()] * 2)
    except (RuntimeError, IndexError, ValueError):
        return False


def _vmaps(models: list[DiagonalNetwork], stacked: dict[str, torch.Tensor]) -> bool:
    """Whether β and one step through torch.func with the first model's attributes are each
    model's own (they are unless beta() or descend() reads attributes that differ)."""
    values = {k: v.clone() for k, v in stacked.items()}
    singles = [copy.deepcopy(m) for m in models]
    with torch.no_grad():
        if not _same(call(models[0], values, "beta", False), [m.beta() for m in singles]):
            return False
        h = torch.rand_like(torch.stack([m.beta() for m in singles])) * 1e-3
        descend(models[0], values, h, False)
        for e, single in enumerate(singles):
            single.descend(h[e])
        return _same(call(models[0], values, "beta", False), [m.beta() for m in singles])


def _same(stacked: torch.Tensor, rows: list[torch.Tensor]) -> bool:
    rows = torch.stack(rows)
    return stacked.shape == rows.shape and torch.allclose(stacked, rows, rtol=1e-12, atol=0)
