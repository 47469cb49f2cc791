"""Per-channel activation statistics through forward hooks.

The "backdoor neurons" of BadNets (section 5.3) and the pruning defense of Fine-Pruning
(section 3.1) both look at the mean activation of each channel of the last convolutional
layer, ``mean_{n, h, w} ReLU(z_{n, c, h, w})``, on clean and on triggered inputs.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .graph import prune_site
from .models import last_conv_layer
from .train import model_device


@contextmanager
def recording(model: nn.Module, layer: str):
    """Record the outputs of module ``layer`` while the block runs: yields a list of tensors."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"layer={layer!r} is not a module of {type(model).__name__}")
    outputs: list[Tensor] = []
    handle = modules[layer].register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
    try:
        yield outputs
    finally:
        handle.remove()


@torch.no_grad()
def channel_activations(model: nn.Module, x: Tensor, conv: str | None = None,
                        batch_size: int = 1000) -> Tensor:
    """Per-image, per-channel mean post-ReLU activation of conv layer ``conv`` (default: the last).

    Returns ``(N, channels)``. The hook sits where the channels reach the next layer
    (:func:`fplab.graph.prune_site`: the conv's BatchNorm when it has one, after a residual
    addition the block's output) and applies the ReLU that follows.
    """
    conv = conv or last_conv_layer(model)
    model.eval()
    device = model_device(model)
    with recording(model, prune_site(model, conv).module) as outputs:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(device))
    return torch.cat([torch.relu(o).mean(dim=(2, 3)).cpu() for o in outputs])


def mean_activations(model: nn.Module, x: Tensor, conv: str | None = None) -> Tensor:
    """Mean activation of each channel of ``conv`` over all of ``x``: shape ``(channels,)``."""
    return channel_activations(model, x, conv).mean(0)


def dormant_channels(means: Tensor, relative: float = 0.01) -> Tensor:
    """Boolean mask of the channels whose mean activation is below ``relative`` x the layer's
    largest mean: the channels Fine-Pruning calls dormant (``means`` from :func:`mean_activations`)."""
    return means < relative * means.max()


def dormant_fraction(means: Tensor, relative: float = 0.01) -> float:
    """Share of the channels that are dormant (:func:`dormant_channels`)."""
    return dormant_channels(means, relative).float().mean().item()


def trigger_share(clean_means: Tensor, triggered_means: Tensor, channels) -> float:
    """Share of the activation the trigger *adds*, ``sum_c max(0, t_c - a_c)``, that falls on
    ``channels`` (indices or a boolean mask): how much of the backdoor's signal pruning those
    channels removes. ``nan`` when the trigger adds nothing."""
    extra = torch.clamp(triggered_means - clean_means, min=0)
    total = extra.sum()
    if total <= 0:
        return float("nan")
    return (extra[torch.as_tensor(channels)].sum() / total).item()
