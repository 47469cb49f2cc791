"""Where a conv layer's channels reach the next layer, read from the model's ``torch.fx`` graph.

The pruning defense (Liu et al. 2018, section 3.1) removes a channel of a conv layer. In a plain
conv -> [BatchNorm] -> ReLU -> [pool] stack the channel reaches the next layer unchanged, so it
is removed by zeroing the conv's *channel layer* (its BatchNorm, or the conv itself). In a residual
network it is not: ``out = relu(bn2(conv2(h)) + shortcut)`` adds the shortcut before any layer
reads the channel, so zeroing ``bn2`` leaves the channel alive. :func:`prune_site` follows the
traced graph from the conv and returns a :class:`Site`:

- ``module``: the module whose output carries the channel exactly as the next layers read it
  (up to ReLUs): the channel layer in a plain stack; after a residual addition, the innermost
  module that outputs the sum (a torchvision ``BasicBlock``, say). The channel mask and the
  activation statistics hook this module;
- ``readers``: the conv / linear layers that read the channel (through ReLU, pooling, dropout and
  flattening, which keep a zero channel zero), or ``blocked``: why not every reader is such a
  layer (a further shortcut addition, a BatchNorm, a concatenation...).

A model that ``torch.fx`` cannot trace gets the plain-stack answer with ``traced=False`` and a
warning. When no module outputs the sum, :func:`prune_site` refuses with a ``ValueError`` that
names the layer and the addition.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass

import torch
from torch import fx, nn

from .errors import check_choice

#: Single-input ops that keep a zero channel zero and do not mix channels.
_KEEP_ZERO_MODULES = (nn.ReLU, nn.ReLU6, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d,
                      nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)
_KEEP_ZERO_FUNCTIONS = {torch.relu, nn.functional.relu, nn.functional.relu6, nn.functional.dropout,
                        nn.functional.max_pool2d, nn.functional.avg_pool2d,
                        nn.functional.adaptive_avg_pool2d, nn.functional.adaptive_max_pool2d,
                        torch.flatten}
_KEEP_ZERO_METHODS = {"relu", "relu_", "flatten", "view", "reshape", "contiguous"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
# ops that pass a channel through unchanged on the way to the next layer (elementwise only)
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.Dropout, nn.Dropout2d, nn.Identity)
_ELEMENTWISE_FUNCTIONS = {torch.relu, nn.functional.relu, nn.functional.relu6, nn.functional.dropout}
_ELEMENTWISE_METHODS = {"relu", "relu_"}


@dataclass(frozen=True)
class Site:
    """Where conv ``conv``'s channels are pruned (see the module docstring)."""

    conv: str
    channel_layer: str                 # the conv's BatchNorm, or the conv
    module: str                        # mask / activations hook this module's output
    shortcut: str | None = None        # the graph node that adds a shortcut, if any
    readers: tuple = ()                # ((module name, "conv" | "linear"), ...)
    blocked: str | None = None         # why some reader is not a conv / linear layer
    traced: bool = True
    graph: fx.GraphModule | None = None
    node: str | None = None            # the graph node whose value ``module`` outputs

    @property
    def residual(self) -> bool:
        return self.module != self.channel_layer


def trace(model: nn.Module) -> fx.GraphModule | None:
    """``torch.fx.symbolic_trace(model)`` of the model's own structure (its forward hooks, such as
    channel masks, are left out of the graph; leaf modules still run theirs when it is called),
    or ``None`` when the model cannot be traced."""
    from collections import OrderedDict
    saved = [(m, m._forward_hooks, m._forward_pre_hooks) for m in model.modules()]
    for m, _, _ in saved:
        m._forward_hooks, m._forward_pre_hooks = OrderedDict(), OrderedDict()
    try:
        return fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow, unsupported ops...: no graph
        return None
    finally:
        for m, hooks, pre in saved:
            m._forward_hooks, m._forward_pre_hooks = hooks, pre


def _module(gm: fx.GraphModule, node: fx.Node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is(gm, node: fx.Node, modules, functions, methods) -> bool:
    if node.op == "call_module":
        return isinstance(_module(gm, node), modules)
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def _is_add(node: fx.Node) -> bool:
    return ((node.op == "call_function" and node.target in _ADD_FUNCTIONS)
            or (node.op == "call_method" and node.target in _ADD_METHODS))


def _stack(node: fx.Node) -> list[str]:
    return list((node.meta.get("nn_module_stack") or {}).keys())


def _output_module(gm: fx.GraphModule, node: fx.Node, calls: dict) -> str | None:
    """The innermost module called once whose forward returns ``node``'s value, or ``None``."""
    if node.op == "call_module" and calls[node.target] == 1:
        return node.target
    users = list(node.users)
    for path in reversed(_stack(node)):
        if "@" in path or path == node.target:
            continue
        inside = [n for n in gm.graph.nodes if path in _stack(n)]
        leaving = [n for n in inside if any(path not in _stack(u) for u in n.users)]
        if leaving == [node] and all(path not in _stack(u) for u in users):
            return path
    return None


def _readers(gm: fx.GraphModule, start: fx.Node) -> tuple[tuple, str | None]:
    """The conv / linear layers that read ``start``'s channels, and why not all are (or None)."""
    readers, todo, seen = [], [start], set()
    while todo:
        node = todo.pop()
        for user in node.users:
            if user in seen:
                continue
            seen.add(user)
            module = _module(gm, user)
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                readers.append((user.target, "conv" if isinstance(module, nn.Conv2d) else "linear"))
            elif _is(gm, user, _KEEP_ZERO_MODULES, _KEEP_ZERO_FUNCTIONS, _KEEP_ZERO_METHODS):
                todo.append(user)
            elif _is_add(user):
                return tuple(readers), f"it also reaches the addition {user.name!r} (a shortcut)"
            elif user.op == "output":
                return tuple(readers), "it is part of the model's output"
            else:
                what = type(module).__name__ if module is not None else str(user.target)
                return tuple(readers), f"{user.name!r} ({what}) reads it and is not a conv or linear layer"
    return tuple(readers), None


def prune_site(model: nn.Module, conv: str) -> Site:
    """Where conv layer ``conv``'s channels reach the next layer (see the module docstring).

    Raises ``ValueError`` naming ``conv`` when it is not a conv layer, is called more than once,
    or its channels are summed with a shortcut that no module outputs.
    """
    modules = dict(model.named_modules())
    check_choice("layer", conv, [n for n, m in modules.items() if isinstance(m, nn.Conv2d)])
    gm = trace(model)
    if gm is None:
        from .models import channel_layer
        warnings.warn(f"{type(model).__name__} cannot be traced by torch.fx: pruning {conv!r} at "
                      "its channel layer, which is right only if nothing is added to it before "
                      "the next layer reads it (no residual shortcut)", stacklevel=3)
        layer = channel_layer(model, conv)
        return Site(conv, layer, layer, traced=False)
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    if calls.get(conv, 0) != 1:
        raise ValueError(f"layer={conv!r} is called {calls.get(conv, 0)} times in the forward pass; "
                         "the pruning defense needs a conv layer used exactly once")
    node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == conv)
    users = list(node.users)
    start = node
    if len(users) == 1 and isinstance(_module(gm, users[0]), nn.BatchNorm2d) \
            and calls[users[0].target] == 1:
        start = users[0]
    layer = start.target
    cur, add, chain = start, None, [start]
    while len(cur.users) == 1:
        nxt = next(iter(cur.users))
        if _is_add(nxt):
            add, chain = nxt, [nxt]
        elif _is(gm, nxt, _ELEMENTWISE_MODULES, _ELEMENTWISE_FUNCTIONS, _ELEMENTWISE_METHODS):
            chain.append(nxt)
        else:
            break
        cur = nxt
    if add is None:
        readers, blocked = _readers(gm, start)
        return Site(conv, layer, layer, None, readers, blocked, True, gm, start.name)
    for candidate in reversed(chain):
        owner = _output_module(gm, candidate, calls)
        if owner is not None:
            readers, blocked = _readers(gm, candidate)
            return Site(conv, layer, owner, add.name, readers, blocked, True, gm, candidate.name)
    raise ValueError(f"layer={conv!r}: its channels are added to a shortcut at {add.name!r} before "
                     "the next layer reads them, and no module of the model outputs that sum, so "
                     "zeroing the channel would not remove it; prune a conv whose block output "
                     "is a module's output (e.g. a torchvision BasicBlock's last conv)")
