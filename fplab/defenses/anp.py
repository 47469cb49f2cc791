"""Adversarial Neuron Pruning (ANP; Wu and Wang, NeurIPS 2021).

A *neuron* is one output channel of a layer: of a ``BatchNorm`` (its ``gamma``, ``beta``), or of a
conv / hidden linear layer that no BatchNorm follows. Neuron ``k`` with weight ``w_k`` and bias
``b_k`` is perturbed multiplicatively,

    w_k -> (m_k + delta_k) w_k,    b_k -> (1 + xi_k) b_k,    |delta_k|, |xi_k| <= eps,

where ``m_k in [0, 1]`` is its *mask* (1 = kept, 0 = pruned). ANP finds masks that keep the
network accurate even under the worst such perturbation:

    min_{m in [0,1]^n}  alpha * L(m * w, b) + (1 - alpha) * max_{|delta|, |xi| <= eps} L((m + delta) * w, (1 + xi) * b)

with ``L`` the cross-entropy on a few hundred clean images. The inner maximum is approximated by
``steps`` signed-gradient steps from a uniform random start (like PGD on the weights); the masks
take one SGD step (momentum 0.9) per mini-batch and are clipped to ``[0, 1]``. Backdoor neurons are
the ones whose small perturbation flips predictions (to the target class, as the notebook shows):
their masks are pushed to 0, and pruning the neurons with ``m <= threshold`` removes the backdoor.

Two modes (:data:`MODES`). ``"faithful"`` (the default) does what the original code does, in the
three places where fplab used to differ and that change which neurons are pruned: the network is
in *train mode* during the optimisation (BatchNorm normalises with batch statistics; the running
statistics it updates are restored afterwards), the perturbation is *not* clipped back to
``[-eps, eps]`` after the signed step (from a uniform start one step of ``eps`` reaches
``[-2 eps, 2 eps]``), and mini-batches are drawn with replacement. ``"fplab"`` is this library's
earlier variant: eval mode (running statistics), clipped perturbation, the clean and perturbed
passes sharing one batch ``[x; x]``, epochs of the clean images. Pruning keeps the original's
``m <= threshold`` (``inclusive=False``: the earlier ``m < threshold``; masks often sit at exactly 0).

How the model is perturbed without editing its source: a forward hook on each neuron layer
rewrites its output ``y = w h + b`` (per channel) as

    y' = y + (s - 1) * (y - b) + xi * b  =  s * (w h) + (1 + xi) * b,     s = m (+ delta)

For a BatchNorm ``h`` is the normalised input, so the hook is exact in train and eval mode. The
model's parameters are never touched; removing the hooks restores it exactly, and with
``s = 1, xi = 0`` the output is bit-for-bit unchanged. The faithful mode instead *folds* the
perturbation into the weights, as the original's noisy BatchNorm does: :meth:`NeuronPerturbation.forward`
calls the model with ``s * w`` and ``(1 + xi) * b`` substituted (``torch.func.functional_call``,
per-channel work only), and feeds conv networks channels-last images (on a CPU, max-pooling a
channels-last tensor is several times faster). Same equation, about twice the original loop's
speed; on the same images it gives the original loop's masks bit for bit.

Pruning sets the pruned neurons' weights to zero in a *copy* (the bias stays, as in the original
code); :func:`pruning_curve` traces clean accuracy and attack success over thresholds or counts,
:func:`prune_by_validation` picks the threshold from clean validation accuracy alone.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from ..progress import progress_bar

from ..data import Data, as_data
from ..errors import check_choice, check_integer, check_positive, check_range
from ..metrics import accuracy, attack_success_rate
from ..models import copy_model
from ..paths import cache_dir
from ..store import (fingerprint, load_result, memoized, save_result, sha256_file, verified_load,
                     verify_sha256)
from ..train import model_device
from .pruning import model_key

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# ----------------------------------------------------------------------------- which neurons

def neuron_layers(model: nn.Module, layers: list[str] | None = None) -> list[str]:
    """Names of the modules whose output channels are ANP's neurons.

    Default: in a network with BatchNorm, every affine BatchNorm layer (as the original
    implementation, which swaps each BN for a noisy one: for a conv -> BN pair that is the conv's
    channel as the next layer sees it; in a PreAct-ResNet, every pre-activation BN); without
    BatchNorm, every conv layer. Plus every linear layer except the last (the output layer: its
    neurons are the classes). ``layers`` picks modules by name instead (a list of names, or one
    name as a string); the output layer is refused there too.
    """
    modules = dict(model.named_modules())
    leaves = [(n, m) for n, m in modules.items() if not list(m.children())]
    linears = [n for n, m in leaves if isinstance(m, nn.Linear)]
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else layers
        if not isinstance(layers, (list, tuple)) or not all(isinstance(n, str) for n in layers):
            raise TypeError(f"layers={layers!r} must be a list of module names (or one name)")
        allowed = [n for n, m in modules.items() if isinstance(m, _NORMS + _LAYERS)
                   and (not linears or n != linears[-1])]
        for name in layers:
            if name not in allowed:
                what = ("the output layer (its neurons are the classes)"
                        if linears and name == linears[-1] else
                        "not a conv, linear or BatchNorm module of the model")
                raise ValueError(f"layers contains {name!r}, which is {what}; allowed: {allowed}")
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"layers={layers!r} must name at least one layer, each once; "
                             f"allowed: {allowed}")
        return list(layers)
    has_norm = any(isinstance(m, _NORMS) and m.affine for _, m in leaves)
    chosen = []
    for name, module in leaves:
        if isinstance(module, _NORMS) and module.affine:
            chosen.append(name)
        elif isinstance(module, nn.Linear) and name != linears[-1]:
            chosen.append(name)
        elif isinstance(module, _LAYERS) and not isinstance(module, nn.Linear) and not has_norm:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"{type(model).__name__} has no prunable layer: ANP needs a conv, a "
                         "BatchNorm or a hidden linear layer (the output layer does not count)")
    return chosen


def _channels(module: nn.Module) -> int:
    if isinstance(module, _NORMS):
        return module.num_features
    return module.out_channels if hasattr(module, "out_channels") else module.out_features


# ----------------------------------------------------------------------------- perturbation

class NeuronPerturbation:
    """Masks and perturbations on a model's neurons, applied by forward hooks (model untouched).

    ``mask[name]``, ``delta[name]``, ``xi[name]`` hold one value per channel of layer ``name``
    (initially 1, 0, 0). ``mode``: ``"clean"`` applies ``m * w, b``; ``"perturbed"`` applies
    ``(m + delta) * w, (1 + xi) * b``; ``"both"`` applies clean to the first ``split`` items of
    the batch and perturbed to the rest; ``"off"`` leaves outputs alone. Use as a context manager,
    or call :meth:`remove` to take the hooks out.
    """

    def __init__(self, model: nn.Module, layers: list[str] | None = None):
        self.model = model
        self.layers = neuron_layers(model, layers)
        modules = dict(model.named_modules())
        param = next(model.parameters(), None)
        kw = {"device": param.device if param is not None else "cpu"}
        self.mask = {n: torch.ones(_channels(modules[n]), **kw) for n in self.layers}
        self.delta = {n: torch.zeros(_channels(modules[n]), **kw) for n in self.layers}
        self.xi = {n: torch.zeros(_channels(modules[n]), **kw) for n in self.layers}
        self.mode, self.split = "clean", None
        self._modules = {n: modules[n] for n in self.layers}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.layers]

    def _hook(self, name: str):
        def hook(module, inputs, out):
            if self.mode == "off":
                return out
            shape = (1, -1) + (1,) * (out.dim() - 2)
            bias = module.bias
            if bias is None:
                bias = torch.zeros_like(self.mask[name])
            bias = bias.view(shape)
            clean = (self.mask[name] - 1).view(shape)
            if self.mode == "clean":
                return out + clean * (out - bias)
            noisy = (self.mask[name] + self.delta[name] - 1).view(shape)
            xi = self.xi[name].view(shape)
            if self.mode == "perturbed":
                return out + noisy * (out - bias) + xi * bias
            a, b = out[:self.split], out[self.split:]  # "both": clean half, perturbed half
            return torch.cat([a + clean * (a - bias), b + noisy * (b - bias) + xi * bias])
        return hook

    def forward(self, x: Tensor) -> Tensor:
        """The model on ``x`` with the perturbation folded into its weights (modes ``"clean"``,
        ``"perturbed"``): ``s * w`` and, perturbed, ``(1 + xi) * b`` substituted for each neuron
        layer's weight and bias (``torch.func.functional_call``; the hooks stand aside meanwhile).
        The same function as the hooks compute, as the original's noisy BatchNorm computes it:
        the full-size work is the layer's own; only per-channel vectors are rescaled."""
        if self.mode not in ("clean", "perturbed"):
            raise ValueError(f"forward needs mode 'clean' or 'perturbed', not {self.mode!r}")
        perturbed, weights = self.mode == "perturbed", {}
        for name, module in self._modules.items():
            scale = self.mask[name] + self.delta[name] if perturbed else self.mask[name]
            w = module.weight
            weights[f"{name}.weight"] = w * scale.view((-1,) + (1,) * (w.dim() - 1))
            if perturbed and module.bias is not None:
                weights[f"{name}.bias"] = module.bias * (1 + self.xi[name])
        mode, self.mode = self.mode, "off"
        try:
            return torch.func.functional_call(self.model, weights, (x,), strict=False)
        finally:
            self.mode = mode

    def values(self) -> dict[str, Tensor]:
        """The masks, detached and on the CPU."""
        return {n: m.detach().cpu().clone() for n, m in self.mask.items()}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class _Frozen:
    """``requires_grad=False`` on every parameter and the mode ANP optimises in; all restored on exit.

    ``train_mode=True`` (the original code): the whole model in train mode, BatchNorm on batch
    statistics; the running statistics it updates meanwhile are put back on exit, so the model
    leaves exactly as it came. Otherwise eval mode, and ``batch_stats=True`` runs only the
    BatchNorm layers on batch statistics without updating their running statistics.
    """

    def __init__(self, model: nn.Module, batch_stats: bool = False, train_mode: bool = False):
        self.model, self.batch_stats, self.train_mode = model, batch_stats, train_mode

    def __enter__(self):
        self.training = [(m, m.training) for m in self.model.modules()]
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.tracking = [(m, m.track_running_stats) for m in self.model.modules()
                         if isinstance(m, _NORMS)]
        self.buffers = [(b, b.clone()) for m, _ in self.tracking for b in m.buffers(recurse=False)]
        self.model.train(self.train_mode)
        if self.batch_stats and not self.train_mode:
            for m, _ in self.tracking:
                m.train()
                m.track_running_stats = False
        for p, _ in self.flags:
            p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc):
        for p, flag in self.flags:
            p.requires_grad_(flag)
        for m, flag in self.tracking:
            m.track_running_stats = flag
        for m, flag in self.training:
            m.training = flag
        with torch.no_grad():
            for b, saved in self.buffers:
                b.copy_(saved)


def channels_last(x: Tensor) -> Tensor:
    """A batch of images (4-D) in channels-last memory layout, the layout :func:`anp_masks` feeds
    the network (same values; on a CPU, conv and max-pool kernels run faster on it); other
    inputs unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _check(eps: float, alpha: float | None = None, steps: int = 1) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps={eps!r} must be >= 0 (the size of the neuron perturbation)")
    if alpha is not None:
        check_range("alpha", alpha, 0.0, 1.0)
    check_integer("steps", steps, 1)


def _maximise_noise(pert: NeuronPerturbation, model, x, y, eps: float, steps: int,
                    gen: torch.Generator, step_size: float | None = None, clip: bool = True,
                    forward=None) -> None:
    """Inner maximisation: random start in [-eps, eps], then ``steps`` signed-gradient steps of
    ``step_size`` (default ``eps / steps``), each clipped back to [-eps, eps] when ``clip``.
    ``forward``: how the perturbed model is called (default ``model``, through the hooks)."""
    forward = model if forward is None else forward
    step_size = eps / steps if step_size is None else step_size
    noise = [*pert.delta.values(), *pert.xi.values()]
    for t in noise:
        t.copy_(torch.rand(t.shape, generator=gen).to(t) * 2 * eps - eps)
    pert.mode = "perturbed"
    for _ in range(steps):
        for t in noise:
            t.requires_grad_(True)
        loss = nn.functional.cross_entropy(forward(x), y)
        grads = torch.autograd.grad(loss, noise, allow_unused=True)  # None: xi of a bias-free layer
        with torch.no_grad():
            for t, g in zip(noise, grads):
                if g is not None:
                    t.add_(step_size * g.sign())
                if clip:
                    t.clamp_(-eps, eps)
        for t in noise:
            t.requires_grad_(False)


# ----------------------------------------------------------------------------- neuron sensitivity

def perturbation_effect(model: nn.Module, data: Data, eps: float, target: int | None = None,
                        steps: int = 10, seed: int = 0, layers=None,
                        batch_stats: bool = False) -> dict:
    """Adversarial neuron perturbation alone, no trigger: how the model's predictions move.

    Finds ``delta, xi`` (|.| <= eps) maximising the cross-entropy on the clean ``data`` with
    ``steps`` signed-gradient steps of size ``2.5 eps / steps`` (the whole set is one batch), then
    reports the error rate on ``data`` under that perturbation and the fraction of images
    predicted as ``target`` (if given) among all and among the misclassified ones.
    """
    _check(eps, steps=steps)
    data = as_data(data, "data")
    device = model_device(model)
    x, y = data.x.to(device), data.y.to(device)
    gen = torch.Generator().manual_seed(seed)
    with _Frozen(model, batch_stats), NeuronPerturbation(model, layers) as pert:
        if eps > 0:
            _maximise_noise(pert, model, x, y, eps, steps, gen, step_size=2.5 * eps / steps)
        pert.mode = "perturbed"
        with torch.no_grad():
            pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    wrong = pred != y
    out = {"eps": eps, "error": wrong.float().mean().item()}
    if target is not None:
        out["predicted_target"] = (pred == target).float().mean().item()
        out["target_among_errors"] = ((pred == target) & wrong).sum().item() / max(1, wrong.sum().item())
    return out


# ----------------------------------------------------------------------------- mask optimisation

@dataclass
class ANPResult:
    """Optimised masks (layer name -> one value per channel) and how the optimisation went."""

    masks: dict[str, Tensor]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    cached: bool = False
    history: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # iteration -> masks
    shipped_key: str = ""  # the name these masks ship under (``anp_masks``' ``shipped``)

    def flat(self) -> Tensor:
        """All mask values in one vector (layer order)."""
        return torch.cat(list(self.masks.values()))

    def table(self) -> pd.DataFrame:
        """One row per neuron: layer, channel, mask value."""
        return pd.DataFrame([{"layer": n, "channel": c, "mask": v}
                             for n, m in self.masks.items() for c, v in enumerate(m.tolist())])


def clean_subset(data, n_clean: int, seed: int = 0) -> Data:
    """``n_clean`` images drawn at random (``seed``) from the defender's clean ``data`` (any input
    :func:`fplab.data.as_data` accepts). More than ``data`` holds: all of it, with a warning."""
    data = as_data(data, "data", purpose="ANP needs the defender's clean images")
    n_clean = check_integer("n_clean", n_clean, 1)
    if n_clean > len(data):
        warnings.warn(f"n_clean={n_clean} is more than the {len(data)} images of data: using all "
                      f"{len(data)}", stacklevel=3)
        n_clean = len(data)
    gen = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=gen)[:int(n_clean)].sort().values)


#: Bumped whenever a change to the algorithm changes the masks, so the cache never reuses old ones.
ANP_VERSION = 3
#: ``"faithful"``: as the original code; ``"fplab"``: this library's earlier variant (module docstring).
MODES = ("faithful", "fplab")


def anp_masks(model: nn.Module, data, eps: float = 0.4, steps: int = 1, alpha: float = 0.2,
              lr: float = 0.2, iterations: int = 2000, batch_size: int = 128, n_clean: int = 500,
              seed: int = 0, layers=None, batch_stats: bool | None = None, cache: bool = False,
              progress: bool = True, mode: str = "faithful", clip_noise: bool | None = None,
              record_at=(), shipped: bool = False) -> ANPResult:
    """Optimise ANP's neuron masks on ``n_clean`` clean images of ``data`` (the paper's defaults).

    Objective (Wu and Wang, 2021, eq. 5)::

        min_m  alpha * L(m * w, b) + (1 - alpha) * max_{|delta|,|xi| <= eps} L((m + delta) * w, (1 + xi) * b)

    Each iteration draws a mini-batch of ``batch_size`` images, maximises over ``delta, xi`` by
    ``steps`` signed-gradient steps of size ``eps / steps`` from a uniform random start, then takes
    one SGD step (``lr``, momentum 0.9) on the masks and clips them to [0, 1]. With ``eps = 0``
    only the natural term is used.

    ``mode="faithful"`` (default) reproduces the original implementation: train mode (BatchNorm
    on batch statistics), no clip after the signed step, separate noise / perturbed / clean passes,
    batches drawn with replacement. It is the default because it is what the paper's numbers come
    from, and on the chapter's benchmark it is also the mode that removes the backdoors (the
    chapter measures both). ``mode="fplab"`` is the earlier variant (eval mode, clipped noise, one
    shared ``[x; x]`` pass, epochs); ``batch_stats`` / ``clip_noise`` override one ingredient of
    it. ``record_at``: iterations at which to keep a copy of the masks (``result.history``).

    ``model`` is left exactly as it was (parameters, running statistics, mode, ``requires_grad``
    flags). ``cache=True`` stores the result under ``$FPLAB_CACHE/anp`` keyed by a hash of the
    model's weights, the data, every argument, :data:`ANP_VERSION` and the compute context (thread
    count, numerics), and reuses it. ``shipped=True``: masks that ship with fplab for exactly this
    model, data and arguments (``fplab/weights/anp-<hash>``, SHA-256 verified; the hash leaves the
    compute context out) are read instead of computed, in any context, as the shipped models are:
    for runs of an hour (chapter 5's deeper network), not for the quick ones a reader's own
    machine should compute. ``FPLAB_NO_SHIPPED=1`` switches them off.
    """
    _check(eps, alpha, steps)
    check_choice("mode", mode, MODES)
    check_integer("iterations", iterations, 0)
    check_integer("batch_size", batch_size, 1)
    check_positive("lr", lr)
    layers = neuron_layers(model, layers) if layers is not None else None
    neuron_layers(model, layers)  # a clear error before anything else for unprunable models
    faithful = mode == "faithful"
    clip = (not faithful) if clip_noise is None else bool(clip_noise)
    batch_stats = bool(batch_stats) and not faithful
    record_at = sorted({int(i) for i in record_at if 0 < int(i) <= iterations})
    clean = clean_subset(data, n_clean, seed)
    args = dict(eps=eps, steps=steps, alpha=alpha, lr=lr, iterations=iterations,
                batch_size=batch_size, n_clean=n_clean, seed=seed, layers=layers,
                version=ANP_VERSION, mode=mode, clip=clip, batch_stats=batch_stats,
                record_at=record_at)
    name = _shipped_key(model, clean, args)
    if cache:
        key = _cache_key(model, clean, args)
        hit = _cache_read(key)
        if hit is not None:
            hit.shipped_key = name
            return hit
    if shipped:
        hit = read_shipped_masks(name)
        if hit is not None:
            return hit
    device = model_device(model)
    x_all, y_all = clean.x.to(device), clean.y.to(device)
    gen = torch.Generator().manual_seed(seed)
    ce = nn.functional.cross_entropy
    losses, history, start = [], {}, time.perf_counter()
    with _Frozen(model, batch_stats, train_mode=faithful), NeuronPerturbation(model, layers) as pert:
        masks = list(pert.mask.values())
        for m in masks:
            m.requires_grad_(True)
        opt = torch.optim.SGD(masks, lr=lr, momentum=0.9)
        batches = _batches(len(clean), batch_size, gen, with_replacement=faithful)
        fwd = pert.forward if faithful else model  # faithful: the perturbation folded into the weights
        for it in progress_bar(range(1, iterations + 1), desc="ANP masks", progress=progress):
            idx = next(batches).to(device)
            x, y, n = channels_last(x_all[idx]), y_all[idx], len(idx)
            if eps > 0:
                _maximise_noise(pert, model, x, y, eps, steps, gen, clip=clip, forward=fwd)
            if eps > 0 and (faithful or batch_stats):  # batch statistics: separate passes
                loss_rob = ce(fwd(x), y)
                pert.mode = "clean"
                loss = alpha * ce(fwd(x), y) + (1 - alpha) * loss_rob
            elif eps > 0:  # running statistics: one pass, clean half and perturbed half
                pert.mode, pert.split = "both", n
                logits = model(torch.cat([x, x]))
                loss = alpha * ce(logits[:n], y) + (1 - alpha) * ce(logits[n:], y)
            else:
                pert.mode = "clean"
                loss = alpha * ce(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0, 1)
            losses.append(loss.item())
            if it in record_at:
                history[it] = pert.values()
        result = ANPResult(pert.values(), losses, time.perf_counter() - start, iterations,
                           history=history, shipped_key=name)
    if cache:
        _cache_write(key, result)
    return result


def _batches(n: int, batch_size: int, gen: torch.Generator, with_replacement: bool):
    """Mini-batch indices forever: drawn with replacement (the original's sampler), or epochs of
    a fresh permutation (a last, short batch is dropped unless it is the only one)."""
    while True:
        if with_replacement:
            yield torch.randint(n, (batch_size,), generator=gen)
            continue
        order = torch.randperm(n, generator=gen)
        for pos in range(0, n, batch_size):
            if pos > 0 and pos + batch_size > n:
                break
            yield order[pos:pos + batch_size]


# ----------------------------------------------------------------------------- pruning

@dataclass
class Pruned:
    """A pruned copy of a model: which neurons went (layer -> channel indices) and the masks."""

    model: nn.Module
    pruned: dict[str, Tensor]
    masks: dict[str, Tensor]
    threshold: float | None = None  # the threshold used (threshold and validation rules)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.pruned.values())


def _as_masks(model: nn.Module, masks) -> dict[str, Tensor]:
    """``masks`` (an :class:`ANPResult` or a dict layer -> one value per channel), checked against
    ``model``: ``ValueError`` naming ``masks`` for an unknown layer or a wrong length."""
    masks = masks.masks if isinstance(masks, ANPResult) else masks
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be an ANPResult or a dict layer name -> mask tensor; got "
                        f"{type(masks).__name__}")
    modules = dict(model.named_modules())
    allowed = [n for n, m in modules.items() if isinstance(m, _NORMS + _LAYERS)]
    out = {}
    for name, mask in masks.items():
        if name not in allowed:
            raise ValueError(f"masks has layer {name!r}, which is not a conv, linear or BatchNorm "
                             f"module of the model; allowed: {allowed}")
        mask = torch.as_tensor(mask).detach().cpu()
        if mask.dim() != 1 or len(mask) != _channels(modules[name]):
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)}; {name!r} has "
                             f"{_channels(modules[name])} channels, so it needs one value each")
        out[name] = mask
    return out


def prune_neurons(model: nn.Module, pruned: dict[str, Tensor]) -> nn.Module:
    """A copy of ``model`` with the weights of the given neurons (layer -> channels) set to 0:
    recorded in the weights, so the copy's ``state_dict`` stays pruned."""
    out = copy_model(model)
    modules = dict(out.named_modules())
    with torch.no_grad():
        for name, channels in pruned.items():
            if name not in modules or getattr(modules[name], "weight", None) is None:
                raise ValueError(f"pruned has layer {name!r}, which is not a module with weights")
            channels = torch.as_tensor(channels, dtype=torch.long)
            if len(channels):
                modules[name].weight[channels.to(modules[name].weight.device)] = 0
    return out


def prune_by_threshold(model: nn.Module, masks, threshold: float = 0.2,
                       inclusive: bool = True) -> Pruned:
    """Prune (in a copy) exactly the neurons whose mask value is ``<= threshold`` (the original
    code's rule; ``inclusive=False``: ``< threshold``)."""
    masks = _as_masks(model, masks)
    check_range("threshold", threshold, 0.0, 1.0)
    pruned = {n: (m <= threshold if inclusive else m < threshold).nonzero().flatten()
              for n, m in masks.items()}
    return Pruned(prune_neurons(model, pruned), pruned, masks, float(threshold))


def prune_by_count(model: nn.Module, masks, count: int) -> Pruned:
    """Prune (in a copy) the ``count`` neurons with the smallest mask values (ties: layer order)."""
    masks = _as_masks(model, masks)
    total = sum(len(m) for m in masks.values())
    count = check_integer("count", count, 0, total)
    flat = torch.cat(list(masks.values()))
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.sort(flat, stable=True).indices[:int(count)]] = True
    pruned, start = {}, 0
    for n, m in masks.items():
        pruned[n] = chosen[start:start + len(m)].nonzero().flatten()
        start += len(m)
    return Pruned(prune_neurons(model, pruned), pruned, masks)


#: The thresholds the original evaluation script sweeps (0 to 0.9 in steps of 0.05).
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(19))


def prune_by_validation(model: nn.Module, masks, val, max_drop: float = 0.02,
                        thresholds=THRESHOLDS) -> Pruned:
    """Prune at the largest threshold whose accuracy drop on the clean ``val`` images stays
    within ``max_drop`` (a fraction, e.g. 0.02 = 2 points): a rule that needs no trigger and no
    poisoned data, only the defender's clean images. The drop is measured against the unpruned
    model, and the sweep stops at the first threshold that exceeds it."""
    check_range("max_drop", max_drop, 0.0, 1.0)
    val = as_data(val, "val", purpose="the rule needs the defender's clean images")
    base = accuracy(model, val)
    best = prune_by_threshold(model, masks, 0.0)
    for t in sorted(float(t) for t in thresholds):
        result = prune_by_threshold(model, masks, t)
        if base - accuracy(result.model, val) > max_drop:
            break
        best = result
    return best


def pruning_curve(model: nn.Module, masks, data, attack, num_classes: int,
                  thresholds=None, counts=None, cache: bool = False) -> pd.DataFrame:
    """Clean accuracy and attack success after pruning, over ``thresholds`` (or ``counts``).

    One row per point: threshold (or count), neurons pruned, clean_acc, asr. ``cache=True``
    stores the rows under ``$FPLAB_CACHE/anp``, keyed by a hash of the model, the masks, the data,
    the attack, the points and :data:`ANP_VERSION`, and reuses them.
    """
    masks = _as_masks(model, masks)
    data = as_data(data, "data")
    if (thresholds is None) == (counts is None):
        raise ValueError("give exactly one of thresholds= or counts=")
    if cache:
        points = [float(v) for v in thresholds] if thresholds is not None else [int(v) for v in counts]
        key = fingerprint("anp.pruning_curve", ANP_VERSION, *model_key(model), masks, data.x, data.y,
                          attack.spec() if attack is not None else None, num_classes,
                          "thresholds" if thresholds is not None else "counts", points,
                          device=model_device(model))
        rows = memoized(cache_dir() / "anp", key, lambda: pruning_curve(
            model, masks, data, attack, num_classes, thresholds, counts).to_dict("records"))
        return pd.DataFrame(rows)
    rows = []
    for value in (thresholds if thresholds is not None else counts):
        result = (prune_by_threshold(model, masks, float(value)) if thresholds is not None
                  else prune_by_count(model, masks, int(value)))
        row = {"threshold" if thresholds is not None else "count": value, "pruned": result.count,
               "clean_acc": accuracy(result.model, data)}
        if attack is not None:
            row["asr"] = attack_success_rate(result.model, data, attack, num_classes)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- cache

def _cache_key(model: nn.Module, clean: Data, args: dict) -> str:
    return fingerprint(model.state_dict(), clean.x, clean.y, args, device=model_device(model))


def _shipped_key(model: nn.Module, clean: Data, args: dict) -> str:
    return "anp-" + fingerprint(model.state_dict(), clean.x, clean.y, args, context=False)


def _from_stored(state: dict, record: dict, name: str = "") -> ANPResult:
    history = {int(k): v for k, v in state.get("history", {}).items()}
    return ANPResult(state["masks"], state["losses"], record["seconds"], record["iterations"], True,
                     history, name)


def _cache_read(key: str) -> ANPResult | None:
    hit = load_result(cache_dir() / "anp", key)
    return None if hit is None else _from_stored(*hit)


def _cache_write(key: str, result: ANPResult, folder=None) -> None:
    save_result(cache_dir() / "anp" if folder is None else folder, key,
                {"masks": result.masks, "losses": result.losses,
                 "history": {str(k): v for k, v in result.history.items()}},
                {"seconds": round(result.seconds, 3), "iterations": result.iterations})


#: The files of a shipped set of masks (``fplab/weights/<shipped_key>/``).
SHIPPED_FILES = ("masks.pt", "masks.json")


def ship_masks(result: ANPResult, folder) -> dict[str, str]:
    """Maintainers (``make ship-weights``): write ``result`` into ``folder`` as it ships
    (:data:`SHIPPED_FILES`); returns ``{file name: SHA-256}`` for the weights manifest."""
    _cache_write("masks", result, folder)
    return {name: sha256_file(Path(folder) / name) for name in SHIPPED_FILES}


def read_shipped_masks(name: str) -> ANPResult | None:
    """The masks shipped with fplab as ``name`` (an :attr:`ANPResult.shipped_key`; files verified
    against the weights manifest), or ``None`` when none ship under it or ``FPLAB_NO_SHIPPED``."""
    from .. import zoo
    entry = zoo.shipped_entries().get(name)
    if entry is None or os.environ.get("FPLAB_NO_SHIPPED"):
        return None
    folder = zoo.SHIPPED_DIR / name
    verify_sha256(folder / "masks.json", entry["files"]["masks.json"])
    record = json.loads((folder / "masks.json").read_text())
    return _from_stored(verified_load(folder / "masks.pt", entry["files"]["masks.pt"]), record, name)
