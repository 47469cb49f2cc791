"""The pruning defense (Liu, Dolan-Gavitt and Garg, 2018, section 3.1).

The defender runs her clean validation images through the network, ranks the channels of the
last convolutional layer by their mean activation

    a_c = mean_{n, h, w} ReLU(z_{n, c, h, w}),

and removes them in increasing order of ``a_c``: a backdoor that lives in channels which stay
dormant on clean inputs is removed first, at little cost in clean accuracy.

Where a channel is removed: at the point where it reaches the next layer
(:func:`fplab.graph.prune_site`). In a plain conv -> [BatchNorm] -> ReLU stack that is the conv's
*channel layer* (its BatchNorm when it has one); in a residual block, whose shortcut is added
before any layer reads the channel, it is the block's output (the sum). ``z`` above is read
there, and ``ReLU(0) = 0`` reaches the next layer exactly as if the channel had been deleted.

Removal is done twice over. A *channel mask* (a forward hook on that module multiplies the pruned
channels by zero) keeps them at zero while the model is fine-tuned (fine-pruning, section 3.3);
and :func:`prune_by_activation` also writes the pruning into the weights (the channel layer's
weights and biases of those channels, or, after a shortcut, the next layers' input weights),
so a ``state_dict`` saved and loaded into a fresh model stays pruned. Both are numerically
identical to physically shrinking the layer (:func:`shrink`, and a unit test).

:func:`pruning_curve` computes clean accuracy and attack success after every step, from 0 to
100% pruned, from *one* partial pass: the model's ``torch.fx`` graph is split at the pruned point,
the values crossing the split are computed once per image set, and each step only re-runs the
rest of the network on masked copies (a full forward pass per step for a model fx cannot trace).
:func:`stopping_point` is the defender's rule: prune as far as validation accuracy stays within
``max_drop`` (default 4 points) of the unpruned network's; :func:`prune_by_activation` stops
computing the curve at the first step that breaks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, fx, nn
from ..progress import progress_bar

from ..activations import mean_activations, recording
from ..data import Data, as_data
from ..errors import check_range
from ..graph import Site, prune_site
from ..metrics import untargeted_effectiveness
from ..models import copy_model, last_conv_layer
from ..paths import cache_dir
from ..poison import Attack, backdoor_labels, eligible
from ..store import fingerprint, memoized
from ..train import model_device

DEFAULT_MAX_DROP = 0.04


# ----------------------------------------------------------------------------- masks

def _mask_hook(module: nn.Module, inputs, output: Tensor) -> Tensor:
    mask = getattr(module, "fplab_channel_mask", None)
    if mask is None:
        return output
    return output * mask.to(output)[None, :, None, None]


def _site(model: nn.Module, layer: str | None) -> Site:
    """Where conv ``layer`` (default: the last) is pruned; a clear error for a non-conv name."""
    return prune_site(model, layer or last_conv_layer(model))


def _check_conv(model: nn.Module, layer: str | None) -> tuple[str, str]:
    """``(conv name, name of the module the mask hooks)``."""
    site = _site(model, layer)
    return site.conv, site.module


def num_channels(model: nn.Module, layer: str | None = None) -> int:
    conv = layer or last_conv_layer(model)
    module = dict(model.named_modules()).get(conv)
    if not isinstance(module, nn.Conv2d):
        _site(model, conv)  # raises, naming the allowed layers
    return module.out_channels


def _install_mask(module: nn.Module, mask: Tensor | None) -> None:
    module.fplab_channel_mask = mask
    if mask is not None and _mask_hook not in module._forward_hooks.values():
        module.register_forward_hook(_mask_hook)


def set_channel_mask(model: nn.Module, pruned, layer: str | None = None) -> nn.Module:
    """Zero the channels ``pruned`` (indices) of conv ``layer`` (default: the last), in place,
    where they reach the next layer (:func:`fplab.graph.prune_site`).

    Replaces any earlier mask on that layer; ``pruned=[]`` keeps every channel. Returns ``model``.
    The mask is a hook, not a weight: :func:`prune_by_activation` also writes it into the weights.
    """
    conv, target = _check_conv(model, layer)
    module = dict(model.named_modules())[target]
    channels = num_channels(model, conv)
    index = torch.as_tensor(list(pruned) if not isinstance(pruned, Tensor) else pruned,
                            dtype=torch.long).cpu()
    if len(index) and (index.min() < 0 or index.max() >= channels):
        raise ValueError(f"pruned channels must be in 0..{channels - 1}; got {index.tolist()}")
    mask = torch.ones(channels)
    mask[index] = 0.0
    _install_mask(module, mask)
    return model


def get_channel_mask(model: nn.Module, layer: str | None = None) -> Tensor | None:
    """The current mask of conv ``layer`` (1 = kept, 0 = pruned), or ``None``."""
    _, target = _check_conv(model, layer)
    return getattr(dict(model.named_modules())[target], "fplab_channel_mask", None)


def channel_masks(model: nn.Module) -> dict[str, Tensor]:
    """Every channel mask set on ``model``: ``{hooked module name: mask}`` (empty when none)."""
    return {name: module.fplab_channel_mask for name, module in model.named_modules()
            if getattr(module, "fplab_channel_mask", None) is not None}


def clear_channel_mask(model: nn.Module, layer: str | None = None) -> nn.Module:
    """Remove the mask of conv ``layer`` (every channel active again), in place."""
    _, target = _check_conv(model, layer)
    module = dict(model.named_modules())[target]
    module.fplab_channel_mask = None
    for key, hook in list(module._forward_hooks.items()):
        if hook is _mask_hook:
            del module._forward_hooks[key]
    return model


@torch.no_grad()
def write_pruning(model: nn.Module, pruned, layer: str | None = None) -> nn.Module:
    """Record the pruning of channels ``pruned`` of conv ``layer`` in ``model``'s weights, in place,
    so that its ``state_dict`` carries it: the channel layer's weights and biases of those
    channels are zeroed (its output there is then exactly 0), or, when a shortcut is added first,
    the input weights of every layer that reads the sum. Refuses (``ValueError``, naming the
    layer and why) when a reader is not a conv or linear layer. Returns ``model``."""
    site = _site(model, layer)
    index = torch.as_tensor(list(pruned) if not isinstance(pruned, Tensor) else pruned,
                            dtype=torch.long).cpu()
    if not len(index):
        return model
    modules = dict(model.named_modules())
    target = modules[site.channel_layer]
    if not site.residual and getattr(target, "weight", None) is not None:
        for param in (target.weight, target.bias):
            if param is not None:
                param[index.to(param.device)] = 0
        return model
    if site.blocked or not site.traced:
        where = (f"summed with a shortcut at {site.shortcut!r}" if site.residual
                 else f"normalised by {site.channel_layer!r}, which has no affine weight")
        raise ValueError(f"layer={site.conv!r}: its channels are {where} before the next layer "
                         f"reads them, and {site.blocked or 'the model cannot be traced'}, so the "
                         "pruning cannot be written into the weights; prune another layer")
    channels = modules[site.conv].out_channels
    for name, kind in site.readers:
        reader = modules[name]
        w = reader.weight
        if kind == "linear":
            if reader.in_features % channels:
                raise ValueError(f"layer={site.conv!r}: {name!r} reads {reader.in_features} "
                                 f"features, not a multiple of the {channels} channels")
            w.view(reader.out_features, channels, -1)[:, index.to(w.device)] = 0
        else:
            per_group, out_per_group = reader.in_channels // reader.groups, reader.out_channels // reader.groups
            for c in index.tolist():
                group = c // per_group
                w[group * out_per_group:(group + 1) * out_per_group, c % per_group] = 0
    return model


# ----------------------------------------------------------------------------- physical removal

def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _shrinkable(model: nn.Module, site: Site) -> str:
    """The one layer that reads the conv's channels, or a ``ValueError`` saying why there is none."""
    conv = dict(model.named_modules())[site.conv]
    why = None
    if site.residual:
        why = (f"its channels are summed with a shortcut at {site.shortcut!r}: deleting them would "
               "change the shape of the residual stream")
    elif conv.groups != 1:
        why = f"it is a grouped convolution (groups={conv.groups})"
    elif site.blocked:
        why = site.blocked
    elif len(site.readers) != 1:
        why = f"{len(site.readers)} layers read its channels ({[n for n, _ in site.readers]})"
    elif site.readers[0][1] == "conv" and dict(model.named_modules())[site.readers[0][0]].groups != 1:
        why = f"the layer that reads it, {site.readers[0][0]!r}, is a grouped convolution"
    if why:
        raise ValueError(f"physical=True cannot delete channels of layer={site.conv!r}: {why}; "
                         "use physical=False (the channels are zeroed instead)")
    return site.readers[0][0]


@torch.no_grad()
def shrink(model: nn.Module, pruned, layer: str | None = None) -> nn.Module:
    """A copy of ``model`` with channels ``pruned`` of conv ``layer`` physically deleted.

    The conv loses those output channels, its BatchNorm (if any) the matching entries, and the
    one layer that reads them (a conv, or an ``nn.Linear`` after flattening) the matching
    inputs. Refuses (``ValueError``) where that would not be the same network: a residual
    shortcut, a grouped convolution, several readers (:func:`fplab.graph.prune_site`).
    """
    model = copy_model(model)
    site = _site(model, layer)
    conv_name = site.conv
    if site.traced:
        consumer = _shrinkable(model, site)
    modules = dict(model.named_modules())
    device = model_device(model)
    conv: nn.Conv2d = modules[conv_name]
    channels = conv.out_channels
    drop = set(int(i) for i in pruned)
    keep = torch.tensor([c for c in range(channels) if c not in drop], dtype=torch.long)
    if len(keep) == 0:
        raise ValueError("shrink cannot delete every channel (a layer needs at least one); "
                         "use set_channel_mask to prune all of them")
    new = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None).to(device)
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    _set_module(model, conv_name, new)
    names = list(modules)
    if not site.traced:  # no graph: the next conv / linear in module order
        consumer = next((n for n in names[names.index(conv_name) + 1:]
                         if isinstance(modules[n], (nn.Conv2d, nn.Linear))), None)
        if consumer is None:
            raise ValueError(f"no layer after {conv_name!r} consumes its channels")
    if site.channel_layer != conv_name:
        name, module = site.channel_layer, modules[site.channel_layer]
        bn = nn.BatchNorm2d(len(keep), module.eps, module.momentum, module.affine,
                            module.track_running_stats).to(device)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, attr) is not None:
                getattr(bn, attr).copy_(getattr(module, attr)[keep])
        bn.num_batches_tracked = module.num_batches_tracked
        _set_module(model, name, bn)
        if getattr(module, "fplab_channel_mask", None) is not None:
            _install_mask(bn, module.fplab_channel_mask[keep])
    old = modules[consumer]
    if isinstance(old, nn.Conv2d):
        repl = nn.Conv2d(len(keep), old.out_channels, old.kernel_size, old.stride, old.padding,
                         old.dilation, old.groups, old.bias is not None)
        repl.to(device).weight.copy_(old.weight[:, keep])
    else:
        spatial = old.in_features // channels
        repl = nn.Linear(len(keep) * spatial, old.out_features, old.bias is not None).to(device)
        repl.weight.copy_(old.weight.view(old.out_features, channels, spatial)[:, keep]
                          .reshape(old.out_features, -1))
    if old.bias is not None:
        repl.bias.copy_(old.bias)
    _set_module(model, consumer, repl)
    if getattr(modules[conv_name], "fplab_channel_mask", None) is not None:  # mask on the conv
        _install_mask(new, modules[conv_name].fplab_channel_mask[keep])
    model.eval()
    return model


# ----------------------------------------------------------------------------- ranking / pruning

def _check_data(name: str, data) -> Data:
    return as_data(data, name, purpose="the pruning defense needs clean images to rank "
                                       "channels and to measure accuracy")


def rank_channels(model: nn.Module, val, layer: str | None = None) -> tuple[Tensor, Tensor]:
    """``(order, means)``: channels of conv ``layer`` by ascending mean activation on ``val``.

    ``means[c]`` is the mean post-ReLU activation of channel ``c``; ``order`` lists the channels
    in the order the defense prunes them (stable sort, so ties keep channel order).
    """
    val = _check_data("val", val)
    conv, _ = _check_conv(model, layer)
    return _ranking(mean_activations(model, val.x, conv))


def _ranking(means: Tensor) -> tuple[Tensor, Tensor]:
    return torch.argsort(means, stable=True), means


def fraction_to_count(fraction: float, channels: int) -> int:
    check_range("fraction", fraction, 0.0, 1.0)
    return int(round(fraction * channels))


@dataclass
class Pruned:
    """A pruned copy of a model and how it was pruned."""

    model: nn.Module
    layer: str
    order: Tensor            # every channel, in pruning order
    pruned: Tensor           # the channels removed (a prefix of ``order``)
    means: Tensor            # mean clean activation per channel (the ranking)

    @property
    def fraction(self) -> float:
        return len(self.pruned) / len(self.order)


#: Part of every cached pruning result's key: bump it when the computation changes, so a fix never
#: reuses a result of the old code.
CURVE_VERSION = 2  # 2: the incremental classifier pre-activation (_Tail)


def model_key(model: nn.Module) -> list:
    """What identifies a model's computation in a result's cache key: its architecture (``repr``),
    its weights and its channel masks."""
    return [repr(model), model.state_dict(), channel_masks(model)]


def _curve_key(model, layer, parts, args) -> str:
    return fingerprint("pruning_curve", CURVE_VERSION, *model_key(model), layer,
                       *[t for d in parts for t in (d.x, d.y)], args, device=model_device(model))


def prune_by_activation(model: nn.Module, val, fraction: float | None = None,
                        layer: str | None = None, max_drop: float = DEFAULT_MAX_DROP,
                        physical: bool = False, cache: bool = False) -> Pruned:
    """Prune a *copy* of ``model``: remove the ``fraction`` of conv ``layer``'s channels least
    active on the clean validation set ``val`` (a :class:`~fplab.data.Data`, an ``(x, y)`` pair,
    a ``DataLoader`` or a ``Dataset``: :func:`fplab.data.as_data`).

    ``fraction=None`` applies the stopping rule instead: prune as far as validation accuracy
    stays within ``max_drop`` of the unpruned model's (:func:`stopping_point`). The copy is
    masked (:func:`set_channel_mask`) and the pruning written into its weights
    (:func:`write_pruning`), so its ``state_dict`` stays pruned. ``physical=True`` deletes the
    channels (:func:`shrink`) instead, or refuses where that would change the network. The input
    model is untouched. ``cache=True`` stores the stopping rule's ranking and count under
    ``$FPLAB_CACHE/pruning`` (as :func:`pruning_curve`) and reuses them.
    """
    val = _check_data("val", val)
    site = _site(model, layer)
    conv = site.conv
    if fraction is not None:
        check_range("fraction", fraction, 0.0, 1.0)
    if max_drop is not None:
        check_range("max_drop", max_drop, 0.0, 1.0)
    if physical and site.traced:
        _shrinkable(model, site)  # refuse before any work
    if fraction is None:
        def rule():
            tail = _Tail(model, site)
            cached = tail.features(val.x)
            order, means = _ranking(tail.means(cached))
            curve = _accuracy_curve(tail, cached, val.y, order, max_drop)
            return {"order": order, "means": means, "count": stopping_point(curve, max_drop)}

        if cache:
            args = {"rule": "stopping", "max_drop": max_drop}
            out = memoized(cache_dir() / "pruning", _curve_key(model, conv, (val,), args), rule,
                           {"layer": conv, **args})
        else:
            out = rule()
        order, means, count = out["order"], out["means"], out["count"]
    else:
        order, means = rank_channels(model, val, conv)
        count = fraction_to_count(fraction, len(order))
    pruned = order[:count]
    if physical:
        out = shrink(model, pruned, conv)
        masked = set_channel_mask(copy_model(model), pruned, conv)
        probe = val.x[:8].to(model_device(model))
        with torch.no_grad():
            if not torch.allclose(out.eval()(probe), masked.eval()(probe), atol=1e-4, rtol=1e-4):
                raise ValueError(f"physical=True: deleting channels of layer={conv!r} changed the "
                                 "network's outputs (its channels reach the next layer in a way "
                                 "fplab does not follow); use physical=False")
    else:
        out = write_pruning(set_channel_mask(copy_model(model), pruned, conv), pruned, conv)
    out.eval()
    return Pruned(out, conv, order, pruned, means)


def stopping_point(val_acc, max_drop: float = DEFAULT_MAX_DROP) -> int:
    """The defender's stopping rule: how many channels to prune.

    ``val_acc[k]`` is validation accuracy with ``k`` channels pruned (``k = 0..C``). Returns the
    largest ``k`` such that every step up to it stays within ``max_drop`` of ``val_acc[0]``
    (pruning stops at the first step that would lose more).
    """
    check_range("max_drop", max_drop, 0.0, 1.0)
    acc = torch.as_tensor(list(val_acc), dtype=torch.float64)
    over = (acc < acc[0] - max_drop - 1e-9).nonzero().flatten()
    return int(over[0]) - 1 if len(over) else len(acc) - 1


# ----------------------------------------------------------------------------- curves

def _split_point(gm: fx.GraphModule, site: fx.Node, model: nn.Module) -> fx.Node:
    """The last node after ``site`` reached through per-channel ops that keep a zero channel zero
    on 4-D tensors (ReLU, pooling, dropout): masking there equals masking at ``site`` (for 0 / 1
    masks), and the cached tensors are smaller and each step's tail shorter."""
    from ..graph import _is
    modules = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
               nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)
    functions = {torch.relu, nn.functional.relu, nn.functional.max_pool2d, nn.functional.avg_pool2d,
                 nn.functional.adaptive_avg_pool2d, nn.functional.adaptive_max_pool2d}
    node = site
    while len(node.users) == 1:
        user = next(iter(user for user in node.users))
        if not _is(gm, user, modules, functions, {"relu", "relu_"}) or user.all_input_nodes != [node]:
            break
        if user.op == "call_module":
            m = model.get_submodule(user.target)
            if m._forward_hooks or m._forward_pre_hooks:
                break
        node = user
    return node


def _split(gm: fx.GraphModule, site: fx.Node, cut: fx.Node) -> tuple[fx.GraphModule, fx.GraphModule]:
    """``(head, tail)`` of a traced model split after node ``cut``: ``head(x)`` returns
    ``site``'s value then the values that cross the split (``cut``'s first), ``tail(*those)``
    the model's output."""
    nodes = list(gm.graph.nodes)
    after = {cut}
    for n in nodes[nodes.index(cut) + 1:]:
        if any(a in after for a in n.all_input_nodes):
            after.add(n)
    after.discard(cut)
    crossing = [cut] + [a for n in nodes if n in after for a in n.all_input_nodes
                        if a not in after and a is not cut and a.op != "get_attr"]
    crossing = list(dict.fromkeys(crossing))
    tail_graph, env = fx.Graph(), {}
    for n in crossing:
        env[n] = tail_graph.placeholder(f"cached_{n.name}")
    for n in nodes:
        if n in after or (n.op == "get_attr" and any(u in after for u in n.users)):
            env[n] = tail_graph.node_copy(n, lambda a: env[a])
    head_graph, henv, needed = fx.Graph(), {}, set()
    todo = [site] + crossing
    while todo:
        n = todo.pop()
        if n not in needed:
            needed.add(n)
            todo.extend(n.all_input_nodes)
    for n in nodes:
        if n in needed:
            henv[n] = head_graph.node_copy(n, lambda a: henv[a])
    head_graph.output(tuple(henv[n] for n in [site] + crossing))
    return fx.GraphModule(gm, head_graph), fx.GraphModule(gm, tail_graph)


def _linear_split(rest: fx.GraphModule) -> tuple[nn.Linear, fx.GraphModule] | None:
    """``(linear, after)`` when ``rest`` (a tail that takes one cached 4-D value) only flattens
    it (dropout aside) into a ``Linear`` layer: the layer's pre-activation is then a sum of one
    term per channel, and ``after(z)`` runs the rest of the network on it. ``None`` otherwise."""
    nodes = list(rest.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    node, flat = inputs[0], False
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.all_input_nodes != [node]:
            return None
        module = rest.get_submodule(user.target) if user.op == "call_module" else None
        if isinstance(module, nn.Flatten) and not flat and module.start_dim == 1 \
                and module.end_dim == -1:
            flat = True
        elif (user.op == "call_function" and user.target is torch.flatten and not flat
              and tuple(user.args[1:]) == (1,) and not user.kwargs):
            flat = True
        elif isinstance(module, (nn.Dropout, nn.Identity)):
            pass
        elif isinstance(module, nn.Linear) and flat:
            after_nodes = nodes[nodes.index(user) + 1:]
            if any(a not in after_nodes and a is not user for n in after_nodes
                   for a in n.all_input_nodes):
                return None
            graph, env = fx.Graph(), {}
            env[user] = graph.placeholder("pre_activation")
            for n in after_nodes:
                env[n] = graph.node_copy(n, lambda a: env[a])
            return module, fx.GraphModule(rest, graph)
        else:
            return None
        node = user
    return None


class _Tail:
    """The network after the pruned point, re-run on cached values (the ``torch.fx`` split), or
    the whole network with a mask hook per step when the model cannot be split.

    When the split point feeds a ``Linear`` layer through a flatten (a conv net's classifier), a
    step does not re-run that layer: its pre-activation ``z = W x + b`` is a sum of one term per
    channel, kept (in float64) per image set and updated by the terms of the channels whose mask
    changed since the last step (``z += (m' - m) W_c x_c``); only the layers after it run. One
    pruning step then costs ``1 / C`` of the layer's full product (a 256-channel traffic network:
    about 50x faster curves); the logits equal the full re-run's up to float32 rounding.
    ``incremental=False`` re-runs the classifier at every step (the benchmark's comparison)."""

    def __init__(self, model: nn.Module, site: Site, incremental: bool = True):
        self.model, self.site, self.target = model, site, site.module
        self.device = model_device(model)
        self.fast = site.graph is not None and not self._inlined_hooks()
        self.linear = None
        if self.fast:
            node = next(n for n in site.graph.graph.nodes if n.name == site.node)
            self.head, self.rest = _split(site.graph, node, _split_point(site.graph, node, model))
            if incremental:
                self.linear = _linear_split(self.rest)

    def _inlined_hooks(self) -> bool:
        """Whether a module fx inlines (not called as a leaf) has hooks the split would skip."""
        leaves = {n.target for n in self.site.graph.graph.nodes if n.op == "call_module"}
        return any((m._forward_hooks or m._forward_pre_hooks) and name not in leaves
                   and name != self.target and name for name, m in self.model.named_modules())

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 1000) -> dict | Tensor:
        """For ``x``, computed once on the model's device: the values crossing the split
        (``"values"``) and each image's mean post-ReLU activation per channel (``"means"``); or
        ``x`` itself without a split. Any mask already on the pruned point is left out."""
        if not self.fast:
            return x
        self.model.eval()
        module = dict(self.model.named_modules())[self.target]
        old = getattr(module, "fplab_channel_mask", None)
        module.fplab_channel_mask = None
        means, parts = [], []
        try:
            for i in range(0, len(x), batch_size):
                site, *values = self.head(x[i:i + batch_size].to(self.device))
                means.append(torch.relu(site).mean(dim=(2, 3)).cpu())
                parts.append(values)
        finally:
            module.fplab_channel_mask = old
        return {"means": torch.cat(means), "values": [torch.cat(v) for v in zip(*parts)]}

    @staticmethod
    def means(cached) -> Tensor:
        """Mean post-ReLU activation per channel (as :func:`~fplab.activations.mean_activations`)."""
        return cached["means"].mean(0)

    @torch.no_grad()
    def _pre_activation(self, cached, mask: Tensor, batch_size: int = 2000) -> Tensor:
        """The ``Linear`` layer's pre-activation (float64) on ``cached`` with ``mask`` applied,
        updated from the one kept for the previous mask (see the class docstring)."""
        linear, (site, *_) = self.linear[0], cached["values"]
        mask = mask.to(site.device, torch.float64)
        n, channels = len(site), site.shape[1]
        state = cached.get("linear")
        if state is None or (state["mask"] != mask).sum() > channels // 4:
            weight = linear.weight.detach().to(torch.float64).reshape(linear.out_features, channels, -1)
            z = torch.empty(n, linear.out_features, dtype=torch.float64, device=site.device)
            flat_w = (weight * mask[None, :, None]).flatten(1)
            for i in range(0, n, batch_size):
                z[i:i + batch_size] = site[i:i + batch_size].flatten(1).double() @ flat_w.T
            if linear.bias is not None:
                z += linear.bias.detach().double()
        else:
            z, weight = state["z"], state["weight"]
            for c in (state["mask"] != mask).nonzero().flatten().tolist():
                change = float(mask[c] - state["mask"][c])
                z += change * (site[:, c].flatten(1).double() @ weight[:, c].T)
        cached["linear"] = {"mask": mask.clone(), "z": z, "weight": weight}
        return z

    @torch.no_grad()
    def predict(self, cached, mask: Tensor, batch_size: int = 2000) -> Tensor:
        """Predicted labels (on the CPU) with the channels where ``mask`` is 0 pruned."""
        out = []
        if self.linear is not None and cached["values"][0][0].numel() == self.linear[0].in_features:
            z = self._pre_activation(cached, mask).to(self.linear[0].weight.dtype)
            for i in range(0, len(z), batch_size):
                out.append(self.linear[1](z[i:i + batch_size]).argmax(1).cpu())
        elif self.fast:
            site, *rest = cached["values"]
            m = mask.to(site)[None, :, None, None]
            for i in range(0, len(site), batch_size):
                inputs = [site[i:i + batch_size] * m] + [r[i:i + batch_size] for r in rest]
                out.append(self.rest(*inputs).argmax(1).cpu())
        else:  # any other architecture: mask hook and a full forward pass per step
            module = dict(self.model.named_modules())[self.target]
            old = getattr(module, "fplab_channel_mask", None)
            module.fplab_channel_mask = mask
            handle = None
            if _mask_hook not in module._forward_hooks.values():
                handle = module.register_forward_hook(_mask_hook)
            try:
                for i in range(0, len(cached), batch_size):
                    out.append(self.model(cached[i:i + batch_size].to(self.device)).argmax(1).cpu())
            finally:
                module.fplab_channel_mask = old
                if handle is not None:
                    handle.remove()
        return torch.cat(out)

    def accuracy(self, cached, labels: Tensor, mask: Tensor) -> float:
        return (self.predict(cached, mask) == labels).float().mean().item()


def _accuracy_curve(tail: _Tail, cached, labels: Tensor, order: Tensor,
                    max_drop: float | None = None) -> list[float]:
    """Accuracy with ``k = 0, 1, ...`` channels pruned in ``order``; with ``max_drop``, stops at
    the first step more than ``max_drop`` below the unpruned accuracy (all the rule needs)."""
    mask = torch.ones(len(order))
    accs = [tail.accuracy(cached, labels, mask)]
    for c in order.tolist():
        mask[c] = 0.0
        accs.append(tail.accuracy(cached, labels, mask))
        if max_drop is not None and accs[-1] < accs[0] - max_drop - 1e-9:
            break
    return accs


def val_accuracy_curve(model: nn.Module, val, layer: str | None = None,
                       order: Tensor | None = None, max_drop: float | None = None) -> list[float]:
    """Validation accuracy with ``k = 0..C`` channels pruned in ``order`` (default: the ranking).

    With ``max_drop`` the curve ends at the first step that breaks the stopping rule
    (:func:`stopping_point` gives the same answer on it)."""
    val = _check_data("val", val)
    site = _site(model, layer)
    tail = _Tail(model, site)
    cached = tail.features(val.x)
    if order is None:
        order = (_ranking(tail.means(cached)) if tail.fast else rank_channels(model, val, site.conv))[0]
    return _accuracy_curve(tail, cached, val.y, order, max_drop)


@dataclass
class PruningCurve:
    """Clean accuracy and attack success after every pruning step (``table``), and the ranking."""

    table: pd.DataFrame      # columns: pruned, fraction, val_acc, clean_acc, asr
    order: Tensor
    means: Tensor            # mean clean (validation) activation per channel
    layer: str
    stop: int                # channels pruned by the stopping rule
    max_drop: float
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def at(self, fraction: float) -> pd.Series:
        """The row for ``fraction`` of the channels pruned (rounded to a whole channel)."""
        return self.table.iloc[fraction_to_count(fraction, len(self.order))]

    @property
    def stop_row(self) -> pd.Series:
        return self.table.iloc[self.stop]


def _asr_setup(attack: Attack, data: Data, num_classes: int):
    """Triggered images and wanted labels, as :func:`fplab.metrics.attack_success_rate` defines."""
    trig = attack.make_trigger(tuple(data.x.shape[1:]))
    if attack.mode == "untargeted":
        return trig.apply(data.x), data.y
    mode = "all_to_one" if attack.mode == "clean_label" else attack.mode
    keep = eligible(data.y, mode, attack.target, attack.source)
    if not keep.any():
        raise ValueError("no image is eligible for this attack (check target / source)")
    x, y = data.x[keep], data.y[keep]
    return trig.apply(x), backdoor_labels(y, mode, attack.target, num_classes)


def pruning_curve(model: nn.Module, val, test, attack: Attack | None,
                  num_classes: int, layer: str | None = None, asr_data=None,
                  max_drop: float = DEFAULT_MAX_DROP, progress: bool = True,
                  cache: bool = False) -> PruningCurve:
    """Validation accuracy, clean test accuracy and attack success after each of the ``C + 1``
    steps of the pruning defense (0, 1, ..., C channels of conv ``layer`` removed).

    Channels are ranked on ``val``; success is measured on triggered ``asr_data`` (default
    ``test``) exactly as :func:`fplab.metrics.attack_success_rate` does (untargeted:
    ``1 - A_backdoor / A_clean``, with ``A_clean`` on the same images). Each image set goes
    through the network's head once; each step re-runs only the layers after the pruned point.
    ``cache=True`` stores the curve under ``$FPLAB_CACHE/pruning``, keyed by a hash of the model
    (architecture, weights, masks), every image set, the attack and the arguments, and reuses it.
    """
    val, test = _check_data("val", val), _check_data("test", test)
    asr_data = _check_data("asr_data", asr_data if asr_data is not None else test)
    site = _site(model, layer)
    if not cache:
        return _pruning_curve(model, site, val, test, attack, num_classes, asr_data, max_drop,
                              progress)
    args = {"attack": attack.spec() if attack is not None else None, "num_classes": num_classes,
            "max_drop": max_drop}
    key = _curve_key(model, site.conv, (val, test, asr_data), args)

    def compute():
        curve = _pruning_curve(model, site, val, test, attack, num_classes, asr_data, max_drop,
                               progress)
        return {"rows": curve.table.to_dict("records"), "order": curve.order,
                "means": curve.means, "stop": curve.stop, "seconds": curve.seconds}

    out = memoized(cache_dir() / "pruning", key, compute, {"layer": site.conv, **args})
    return PruningCurve(pd.DataFrame(out["rows"]), out["order"], out["means"], site.conv,
                        out["stop"], max_drop, out["seconds"])


def _pruning_curve(model, site, val, test, attack, num_classes, asr_data, max_drop,
                   progress, incremental: bool = True) -> PruningCurve:
    start = time.perf_counter()
    tail = _Tail(model, site, incremental)
    sets = {"val": (tail.features(val.x), val.y), "test": (tail.features(test.x), test.y)}
    order, means = (_ranking(tail.means(sets["val"][0])) if tail.fast
                    else rank_channels(model, val, site.conv))
    if attack is not None:
        xb, yb = _asr_setup(attack, asr_data, num_classes)
        sets["bd"] = (tail.features(xb), yb)
        if attack.mode == "untargeted" and asr_data is not test:
            sets["bd_clean"] = (tail.features(asr_data.x), asr_data.y)
    mask = torch.ones(len(order))
    rows = []
    for k in progress_bar(range(len(order) + 1), desc="pruning curve", progress=progress):
        if k:
            mask[order[k - 1]] = 0.0
        acc = {name: tail.accuracy(c, y, mask) for name, (c, y) in sets.items()}
        asr = None
        if attack is not None:
            if attack.mode == "untargeted":  # relative to the clean accuracy on the same images
                base = acc.get("bd_clean", acc["test"])
                asr = untargeted_effectiveness(base, acc["bd"]) if base > 0 else float("nan")
            else:
                asr = acc["bd"]
        rows.append({"pruned": k, "fraction": k / len(order), "val_acc": acc["val"],
                     "clean_acc": acc["test"], "asr": asr})
    table = pd.DataFrame(rows)
    stop = stopping_point(table["val_acc"], max_drop)
    return PruningCurve(table, order, means, site.conv, stop, max_drop, time.perf_counter() - start)
