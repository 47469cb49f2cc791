"""Channel Lipschitzness-based pruning (CLP; Zheng, Tang, Li and Liu, ECCV 2022).

The paper: "Data-free backdoor removal based on channel Lipschitzness".

A data-free defense: it looks only at the weights. For output channel ``k`` of a conv layer with
kernel ``W_k`` (``C_in x h x w``) followed by a BatchNorm with scale ``gamma_k`` and running
variance ``var_k``, the channel computes ``gamma_k / sigma_k * (W_k * x) + const``
(``sigma_k = sqrt(var_k + bn_eps)``). Its Lipschitz constant is bounded by the
*upper bound of the channel Lipschitz constant* (UCLC, the paper's eq. 6)

    UCLC_k = || (gamma_k / sigma_k) W_k ||_2 = |gamma_k| / sigma_k * sigma_max(W_k reshaped to C_in x hw)

where ``sigma_max`` is the largest singular value. A backdoor needs a few channels that react
strongly to a small trigger: large UCLC. Within each layer, CLP prunes the channels with

    UCLC_k > mean(UCLC) + u * std(UCLC),      u = 3 by default (the paper's setting),

by zeroing their BatchNorm ``gamma`` and ``beta`` (without a BatchNorm: the conv's weight and
bias), so the channel outputs exactly 0. No clean image is used, and the whole procedure is a
few small SVDs: milliseconds on the course's networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models import copy_model

DEFAULT_U = 3.0


def _check_u(u: float) -> None:
    if not (isinstance(u, (int, float)) and u > 0):
        raise ValueError(f"u={u!r} must be a positive number (the threshold is mean + u * std "
                         "of the layer's channel Lipschitz bounds; the paper uses u = 3)")


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str | None]]:
    """``(conv name, BatchNorm name or None)`` for every ``nn.Conv2d``, in module order.

    A conv is paired with the BatchNorm2d that directly follows it in ``named_modules`` order and
    has as many features as the conv has output channels (the conv -> BN -> ReLU blocks of
    :class:`fplab.models.ConvNet`)."""
    modules = list(model.named_modules())
    pairs = []
    for i, (name, module) in enumerate(modules):
        if not isinstance(module, nn.Conv2d):
            continue
        bn = None
        if i + 1 < len(modules):
            nxt_name, nxt = modules[i + 1]
            if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == module.out_channels:
                bn = nxt_name
        pairs.append((name, bn))
    return pairs


@torch.no_grad()
def channel_lipschitz(model: nn.Module) -> dict[str, Tensor]:
    """UCLC per output channel of every conv layer: ``{conv name: tensor (out_channels,)}``."""
    modules = dict(model.named_modules())
    out = {}
    for conv_name, bn_name in conv_bn_pairs(model):
        weight = modules[conv_name].weight.detach().float().cpu()
        kernels = weight.reshape(weight.shape[0], weight.shape[1], -1)  # (C_out, C_in, h*w)
        if bn_name is not None:
            bn = modules[bn_name]
            sigma = (bn.running_var.detach().float().cpu() + bn.eps).sqrt()
            gamma = bn.weight.detach().float().cpu() if bn.weight is not None else torch.ones_like(sigma)
            kernels = kernels * (gamma / sigma).abs()[:, None, None]
        out[conv_name] = torch.linalg.matrix_norm(kernels, ord=2)  # largest singular value each
    if not out:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer: CLP prunes conv channels")
    return out


@dataclass
class CLPResult:
    """A CLP-pruned copy, the channels it removed (conv name -> indices) and the UCLC scores."""

    model: nn.Module
    pruned: dict[str, Tensor]
    scores: dict[str, Tensor]
    thresholds: dict[str, float]
    u: float

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.pruned.values())


def clp_select(scores: dict[str, Tensor], u: float = DEFAULT_U) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Per layer, the channels whose UCLC exceeds ``mean + u * std`` (std with Bessel's
    correction), and the thresholds."""
    _check_u(u)
    pruned, thresholds = {}, {}
    for name, s in scores.items():
        spread = s.std() if len(s) > 1 else torch.tensor(0.0)
        thresholds[name] = float(s.mean() + u * spread)
        pruned[name] = (s > thresholds[name]).nonzero().flatten()
    return pruned, thresholds


@torch.no_grad()
def zero_channels(model: nn.Module, pruned: dict[str, Tensor]) -> nn.Module:
    """In place: make the given output channels of each conv output exactly 0 (its BatchNorm's
    ``gamma`` and ``beta`` set to 0, or, without a BatchNorm, the conv's weight and bias)."""
    modules = dict(model.named_modules())
    bn_of = dict(conv_bn_pairs(model))
    for conv_name, channels in pruned.items():
        if conv_name not in bn_of:
            raise ValueError(f"pruned names {conv_name!r}, which is not a conv layer of the model; "
                             f"allowed: {list(bn_of)}")
        if not len(channels):
            continue
        target = modules[bn_of[conv_name]] if bn_of[conv_name] else modules[conv_name]
        index = channels.to(target.weight.device)
        target.weight[index] = 0
        if target.bias is not None:
            target.bias[index] = 0
    return model


def clp(model: nn.Module, u: float = DEFAULT_U) -> CLPResult:
    """CLP on a copy of ``model`` (``model`` is never modified); data-free.

    Scores every conv channel by :func:`channel_lipschitz`, selects per layer the channels above
    ``mean + u * std`` (:func:`clp_select`) and zeroes them (:func:`zero_channels`)."""
    _check_u(u)
    scores = channel_lipschitz(model)
    pruned, thresholds = clp_select(scores, u)
    out = zero_channels(copy_model(model), pruned)
    out.eval()
    return CLPResult(out, pruned, scores, thresholds, float(u))
