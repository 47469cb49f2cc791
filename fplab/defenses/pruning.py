"""The pruning defense (Liu, Dolan-Gavitt and Garg, 2018, section 3.1).

The defender runs her clean validation images through the network, ranks the channels of the
last convolutional layer by their mean activation

    a_c = mean_{n, h, w} ReLU(z_{n, c, h, w}),

and removes them in increasing order of ``a_c``: a backdoor that lives in channels which stay
dormant on clean inputs is removed first, at little cost in clean accuracy.

Removal is done by a *channel mask*: a forward hook on the conv's channel layer (its BatchNorm
when it has one, :func:`fplab.models.channel_layer`) multiplies the pruned channels by zero, so
``ReLU(0) = 0`` reaches the next layer exactly as if the channel had been deleted. That is
numerically identical to physically shrinking the layer (:func:`shrink`, and a unit test).

:func:`pruning_curve` computes clean accuracy and attack success after every step, from 0 to
100% pruned, from *one* activation pass: the channel layer's output is computed once for each
image set, and each step only re-runs the (cheap) rest of the network on masked copies.
:func:`stopping_point` is the defender's rule: prune as far as validation accuracy stays within
``max_drop`` (default 4 points) of the unpruned network's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..activations import mean_activations, recording
from ..data import Data
from ..errors import check_range
from ..metrics import untargeted_effectiveness
from ..models import channel_layer, copy_model, last_conv_layer
from ..poison import Attack, backdoor_labels, eligible

DEFAULT_MAX_DROP = 0.04


# ----------------------------------------------------------------------------- masks

def _mask_hook(module: nn.Module, inputs, output: Tensor) -> Tensor:
    mask = getattr(module, "fplab_channel_mask", None)
    if mask is None:
        return output
    return output * mask.to(output)[None, :, None, None]


def _check_conv(model: nn.Module, layer: str | None) -> tuple[str, str]:
    """``(conv name, channel layer name)``; a clear error when ``layer`` is not a conv layer."""
    conv = layer or last_conv_layer(model)
    return conv, channel_layer(model, conv)  # channel_layer raises for a non-conv name


def num_channels(model: nn.Module, layer: str | None = None) -> int:
    conv, _ = _check_conv(model, layer)
    return dict(model.named_modules())[conv].out_channels


def set_channel_mask(model: nn.Module, pruned, layer: str | None = None) -> nn.Module:
    """Zero the channels ``pruned`` (indices) of conv ``layer`` (default: the last), in place.

    Replaces any earlier mask on that layer; ``pruned=[]`` keeps every channel. Returns ``model``.
    """
    conv, target = _check_conv(model, layer)
    module = dict(model.named_modules())[target]
    channels = num_channels(model, conv)
    index = torch.as_tensor(list(pruned) if not isinstance(pruned, Tensor) else pruned,
                            dtype=torch.long)
    if len(index) and (index.min() < 0 or index.max() >= channels):
        raise ValueError(f"pruned channels must be in 0..{channels - 1}; got {index.tolist()}")
    mask = torch.ones(channels)
    mask[index] = 0.0
    module.fplab_channel_mask = mask
    if _mask_hook not in module._forward_hooks.values():
        module.register_forward_hook(_mask_hook)
    return model


def get_channel_mask(model: nn.Module, layer: str | None = None) -> Tensor | None:
    """The current mask of conv ``layer`` (1 = kept, 0 = pruned), or ``None``."""
    _, target = _check_conv(model, layer)
    return getattr(dict(model.named_modules())[target], "fplab_channel_mask", None)


def channel_masks(model: nn.Module) -> dict[str, Tensor]:
    """Every channel mask set on ``model``: ``{channel layer name: mask}`` (empty when none)."""
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


# ----------------------------------------------------------------------------- physical removal

def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def shrink(model: nn.Module, pruned, layer: str | None = None) -> nn.Module:
    """A copy of ``model`` with channels ``pruned`` of conv ``layer`` physically deleted.

    The conv loses those output channels, its BatchNorm (if any) the matching entries, and the
    next layer that consumes them (a conv, or the first ``nn.Linear`` after flattening) the
    matching inputs. Works for the sequential :class:`fplab.models.ConvNet` family.
    """
    model = copy_model(model)
    conv_name, _ = _check_conv(model, layer)
    modules = dict(model.named_modules())
    conv: nn.Conv2d = modules[conv_name]
    channels = conv.out_channels
    drop = set(int(i) for i in pruned)
    keep = torch.tensor([c for c in range(channels) if c not in drop], dtype=torch.long)
    if len(keep) == 0:
        raise ValueError("shrink cannot delete every channel (a layer needs at least one); "
                         "use set_channel_mask to prune all of them")
    new = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    _set_module(model, conv_name, new)
    names = list(modules)
    consumer = None
    for name in names[names.index(conv_name) + 1:]:
        module = modules[name]
        if isinstance(module, nn.BatchNorm2d) and consumer is None and module.num_features == channels:
            bn = nn.BatchNorm2d(len(keep), module.eps, module.momentum, module.affine,
                                module.track_running_stats)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                if getattr(module, attr) is not None:
                    getattr(bn, attr).copy_(getattr(module, attr)[keep])
            bn.num_batches_tracked = module.num_batches_tracked
            _set_module(model, name, bn)
            if getattr(module, "fplab_channel_mask", None) is not None:
                bn.fplab_channel_mask = module.fplab_channel_mask[keep]
                bn.register_forward_hook(_mask_hook)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            consumer = name
            break
    if consumer is None:
        raise ValueError(f"no layer after {conv_name!r} consumes its channels")
    old = modules[consumer]
    if isinstance(old, nn.Conv2d):
        repl = nn.Conv2d(len(keep), old.out_channels, old.kernel_size, old.stride, old.padding,
                         old.dilation, old.groups, old.bias is not None)
        repl.weight.copy_(old.weight[:, keep])
    else:
        spatial = old.in_features // channels
        repl = nn.Linear(len(keep) * spatial, old.out_features, old.bias is not None)
        repl.weight.copy_(old.weight.view(old.out_features, channels, spatial)[:, keep]
                          .reshape(old.out_features, -1))
    if old.bias is not None:
        repl.bias.copy_(old.bias)
    _set_module(model, consumer, repl)
    if getattr(modules[conv_name], "fplab_channel_mask", None) is not None:  # mask on the conv
        new.fplab_channel_mask = modules[conv_name].fplab_channel_mask[keep]
        new.register_forward_hook(_mask_hook)
    model.eval()
    return model


# ----------------------------------------------------------------------------- ranking / pruning

def _check_data(name: str, data: Data) -> None:
    if data is None or len(data) == 0:
        raise ValueError(f"{name} is empty: the pruning defense needs clean images to rank "
                         "channels and to measure accuracy")


def rank_channels(model: nn.Module, val: Data, layer: str | None = None) -> tuple[Tensor, Tensor]:
    """``(order, means)``: channels of conv ``layer`` by ascending mean activation on ``val``.

    ``means[c]`` is the mean post-ReLU activation of channel ``c``; ``order`` lists the channels
    in the order the defense prunes them (stable sort, so ties keep channel order).
    """
    _check_data("val", val)
    conv, _ = _check_conv(model, layer)
    means = mean_activations(model, val.x, conv)
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


def prune_by_activation(model: nn.Module, val: Data, fraction: float | None = None,
                        layer: str | None = None, max_drop: float = DEFAULT_MAX_DROP,
                        physical: bool = False) -> Pruned:
    """Prune a *copy* of ``model``: remove the ``fraction`` of conv ``layer``'s channels least
    active on the clean validation set ``val``.

    ``fraction=None`` applies the stopping rule instead: prune as far as validation accuracy
    stays within ``max_drop`` of the unpruned model's (:func:`stopping_point`). ``physical=True``
    deletes the channels (:func:`shrink`) instead of masking them. The input model is untouched.
    """
    _check_data("val", val)
    conv, _ = _check_conv(model, layer)
    if fraction is not None:
        check_range("fraction", fraction, 0.0, 1.0)
    order, means = rank_channels(model, val, conv)
    if fraction is None:
        curve = val_accuracy_curve(model, val, conv, order)
        count = stopping_point(curve, max_drop)
    else:
        count = fraction_to_count(fraction, len(order))
    pruned = order[:count]
    if physical:
        out = shrink(model, pruned, conv)
    else:
        out = set_channel_mask(copy_model(model), pruned, conv)
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

class _Tail:
    """The part of a sequential ConvNet after a channel layer, to re-run on cached activations."""

    def __init__(self, model: nn.Module, target: str):
        self.model, self.target = model, target
        self.fast = False
        parent, _, child = target.rpartition(".")
        container = model.get_submodule(parent) if parent else None
        if (isinstance(container, nn.Sequential) and parent == "features"
                and hasattr(model, "classifier")):
            names = list(container._modules)
            self.rest = nn.Sequential(*[container._modules[n] for n in names[names.index(child) + 1:]],
                                      model.classifier)
            self.fast = True

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 1000) -> Tensor | Tensor:
        """The channel layer's output for ``x`` (cached once), or ``x`` itself in slow mode."""
        if not self.fast:
            return x
        self.model.eval()
        with recording(self.model, self.target) as outputs:
            for i in range(0, len(x), batch_size):
                self.model(x[i:i + batch_size])
        return torch.cat(outputs)

    @torch.no_grad()
    def predict(self, cached: Tensor, mask: Tensor, batch_size: int = 2000) -> Tensor:
        out = []
        if self.fast:
            m = mask[None, :, None, None]
            for i in range(0, len(cached), batch_size):
                out.append(self.rest(cached[i:i + batch_size] * m).argmax(1))
        else:  # any other architecture: mask hook and a full forward pass per step
            module = dict(self.model.named_modules())[self.target]
            old = getattr(module, "fplab_channel_mask", None)
            module.fplab_channel_mask = mask
            handle = None
            if _mask_hook not in module._forward_hooks.values():
                handle = module.register_forward_hook(_mask_hook)
            try:
                for i in range(0, len(cached), batch_size):
                    out.append(self.model(cached[i:i + batch_size]).argmax(1))
            finally:
                module.fplab_channel_mask = old
                if handle is not None:
                    handle.remove()
        return torch.cat(out)


def val_accuracy_curve(model: nn.Module, val: Data, layer: str | None = None,
                       order: Tensor | None = None) -> list[float]:
    """Validation accuracy with ``k = 0..C`` channels pruned in ``order`` (default: the ranking)."""
    _check_data("val", val)
    conv, target = _check_conv(model, layer)
    if order is None:
        order, _ = rank_channels(model, val, conv)
    tail = _Tail(model, target)
    cached = tail.features(val.x)
    mask = torch.ones(len(order))
    accs = [(tail.predict(cached, mask) == val.y).float().mean().item()]
    for c in order.tolist():
        mask[c] = 0.0
        accs.append((tail.predict(cached, mask) == val.y).float().mean().item())
    return accs


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


def pruning_curve(model: nn.Module, val: Data, test: Data, attack: Attack | None,
                  num_classes: int, layer: str | None = None, asr_data: Data | None = None,
                  max_drop: float = DEFAULT_MAX_DROP, progress: bool = True) -> PruningCurve:
    """Validation accuracy, clean test accuracy and attack success after each of the ``C + 1``
    steps of the pruning defense (0, 1, ..., C channels of conv ``layer`` removed).

    Channels are ranked on ``val``; success is measured on triggered ``asr_data`` (default
    ``test``) exactly as :func:`fplab.metrics.attack_success_rate` does (untargeted:
    ``1 - A_backdoor / A_clean``, with ``A_clean`` on the same images). Each image set goes
    through the network's head once; each step re-runs only the layers after the channel layer.
    """
    _check_data("val", val)
    _check_data("test", test)
    start = time.perf_counter()
    conv, target = _check_conv(model, layer)
    order, means = rank_channels(model, val, conv)
    tail = _Tail(model, target)
    sets = {"val": (tail.features(val.x), val.y), "test": (tail.features(test.x), test.y)}
    if attack is not None:
        asr_data = asr_data if asr_data is not None else test
        _check_data("asr_data", asr_data)
        xb, yb = _asr_setup(attack, asr_data, num_classes)
        sets["bd"] = (tail.features(xb), yb)
        if attack.mode == "untargeted":
            sets["bd_clean"] = (tail.features(asr_data.x), asr_data.y)
    mask = torch.ones(len(order))
    rows = []
    for k in tqdm(range(len(order) + 1), desc="pruning curve", disable=not progress, leave=False):
        if k:
            mask[order[k - 1]] = 0.0
        acc = {name: (tail.predict(c, mask) == y).float().mean().item() for name, (c, y) in sets.items()}
        asr = None
        if attack is not None:
            if attack.mode == "untargeted":
                base = acc["bd_clean"]
                asr = untargeted_effectiveness(base, acc["bd"]) if base > 0 else float("nan")
            else:
                asr = acc["bd"]
        rows.append({"pruned": k, "fraction": k / len(order), "val_acc": acc["val"],
                     "clean_acc": acc["test"], "asr": asr})
    table = pd.DataFrame(rows)
    stop = stopping_point(table["val_acc"], max_drop)
    return PruningCurve(table, order, means, conv, stop, max_drop, time.perf_counter() - start)


# ----------------------------------------------------------------------------- benchmark

def benchmark_pruning_curve(profile: str = "fast") -> dict:
    """Seconds for the whole pruning curve (every channel of the last conv layer) of one model.

    The traffic-sign network (``traffic_cnn_bn``, 64 channels) on the GTSRB validation (ranking)
    and test sets (clean and triggered); the zoo's baseline model when it is cached, else a
    freshly initialised one of the same architecture (the timing does not depend on the weights).
    """
    from .. import casestudies, zoo
    from ..models import build_model

    case = casestudies.case_study("traffic", profile)
    recipe = case.baseline_recipe()
    splits = recipe.splits()
    if (zoo.entry_dir(recipe) / "manifest.json").exists():
        model, source = zoo.load(recipe).model, "zoo baseline model"
    else:
        model, source = build_model(recipe.model, splits.shape, splits.num_classes, seed=0), "untrained"
        model.eval()
    start = time.perf_counter()
    curve = case.pruning_curve(model, splits, progress=False)
    seconds = time.perf_counter() - start
    return {"benchmark": "pruning curve (whole last conv layer)", "model": recipe.model,
            "weights": source, "channels": len(curve.order), "steps": len(curve.table),
            "val_images": len(splits.val), "test_images": len(splits.test),
            "seconds": round(seconds, 2), "limit_seconds": 15}
