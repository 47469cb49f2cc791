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
their masks are pushed to 0, and pruning the neurons with ``m < threshold`` removes the backdoor.

How the model is perturbed without editing its source: a forward hook on each neuron layer
rewrites its output ``y = w h + b`` (per channel) as

    y' = y + (s - 1) * (y - b) + xi * b  =  s * (w h) + (1 + xi) * b,     s = m (+ delta)

The model's parameters are never touched; removing the hooks restores it exactly, and with
``s = 1, xi = 0`` the output is bit-for-bit unchanged. BatchNorm runs in eval mode (running
statistics), so the optimisation leaves even the running statistics alone. The clean and the
perturbed forward passes share one batch (``[x; x]``, the hook treats each half differently).

Pruning sets the pruned neurons' weights to zero in a *copy* (the bias stays, as in the original
code); :func:`pruning_curve` traces clean accuracy and attack success over thresholds or counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import Data
from ..errors import check_range
from ..metrics import accuracy, attack_success_rate
from ..models import copy_model
from ..paths import cache_dir
from ..store import fingerprint, load_result, save_result
from ..train import model_device

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# ----------------------------------------------------------------------------- which neurons

def neuron_layers(model: nn.Module, layers: list[str] | None = None) -> list[str]:
    """Names of the modules whose output channels are ANP's neurons.

    Default: in a network with BatchNorm, every affine BatchNorm layer (as the original
    implementation, which swaps each BN for a noisy one: for a conv -> BN pair that is the conv's
    channel as the next layer sees it; in a PreAct-ResNet, every pre-activation BN); without
    BatchNorm, every conv layer. Plus every linear layer except the last (the output layer: its
    neurons are the classes). ``layers`` picks modules by name instead.
    """
    modules = dict(model.named_modules())
    if layers is not None:
        for name in layers:
            if name not in modules or not isinstance(modules[name], _NORMS + _LAYERS):
                allowed = [n for n, m in modules.items() if isinstance(m, _NORMS + _LAYERS)]
                raise ValueError(f"layers contains {name!r}, which is not a conv, linear or "
                                 f"BatchNorm module of the model; allowed: {allowed}")
        return list(layers)
    leaves = [(n, m) for n, m in modules.items() if not list(m.children())]
    linears = [n for n, m in leaves if isinstance(m, nn.Linear)]
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
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit.

    ``batch_stats=True`` runs the BatchNorm layers on batch statistics instead (as the original
    code, which optimises in train mode) without updating their running statistics.
    """

    def __init__(self, model: nn.Module, batch_stats: bool = False):
        self.model, self.batch_stats = model, batch_stats

    def __enter__(self):
        self.training = [(m, m.training) for m in self.model.modules()]
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.tracking = [(m, m.track_running_stats) for m in self.model.modules()
                         if isinstance(m, _NORMS)]
        self.model.eval()
        if self.batch_stats:
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


def _check(eps: float, alpha: float | None = None, steps: int = 1) -> None:
    if not eps >= 0:
        raise ValueError(f"eps={eps!r} must be >= 0 (the size of the neuron perturbation)")
    if alpha is not None:
        check_range("alpha", alpha, 0.0, 1.0)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")


def _maximise_noise(pert: NeuronPerturbation, model, x, y, eps: float, steps: int,
                    gen: torch.Generator, step_size: float | None = None) -> None:
    """Inner maximisation: random start in [-eps, eps], then ``steps`` signed-gradient steps."""
    step_size = eps / steps if step_size is None else step_size
    noise = [*pert.delta.values(), *pert.xi.values()]
    for t in noise:
        t.copy_(torch.rand(t.shape, generator=gen).to(t) * 2 * eps - eps)
    pert.mode = "perturbed"
    for _ in range(steps):
        for t in noise:
            t.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, noise)
        with torch.no_grad():
            for t, g in zip(noise, grads):
                t.add_(step_size * g.sign()).clamp_(-eps, eps)
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

    def flat(self) -> Tensor:
        """All mask values in one vector (layer order)."""
        return torch.cat(list(self.masks.values()))

    def table(self) -> pd.DataFrame:
        """One row per neuron: layer, channel, mask value."""
        return pd.DataFrame([{"layer": n, "channel": c, "mask": v}
                             for n, m in self.masks.items() for c, v in enumerate(m.tolist())])


def clean_subset(data: Data, n_clean: int, seed: int = 0) -> Data:
    """``n_clean`` images drawn at random (``seed``) from the defender's clean ``data``."""
    if int(n_clean) != n_clean or not 1 <= n_clean <= len(data):
        raise ValueError(f"n_clean={n_clean!r} must be an integer in [1, {len(data)}]")
    gen = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=gen)[:int(n_clean)].sort().values)


def anp_masks(model: nn.Module, data: Data, eps: float = 0.4, steps: int = 1, alpha: float = 0.2,
              lr: float = 0.2, iterations: int = 2000, batch_size: int = 128, n_clean: int = 500,
              seed: int = 0, layers=None, batch_stats: bool = False, cache: bool = False,
              progress: bool = True) -> ANPResult:
    """Optimise ANP's neuron masks on ``n_clean`` clean images of ``data`` (the paper's defaults).

    Objective (Wu and Wang, 2021, eq. 5)::

        min_m  alpha * L(m * w, b) + (1 - alpha) * max_{|delta|,|xi| <= eps} L((m + delta) * w, (1 + xi) * b)

    Each iteration draws a mini-batch of ``batch_size`` images, maximises over ``delta, xi`` by
    ``steps`` signed-gradient steps of size ``eps / steps`` from a uniform random start, then takes
    one SGD step (``lr``, momentum 0.9) on the masks and clips them to [0, 1]. With ``eps = 0``
    only the natural term is used. ``model`` is left exactly as it was (parameters, mode,
    ``requires_grad`` flags). ``cache=True`` stores the result under ``$FPLAB_CACHE/anp`` keyed by
    a hash of the model's weights, the data and every argument, and reuses it.
    """
    _check(eps, alpha, steps)
    if iterations < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"iterations={iterations} must be >= 0, batch_size={batch_size} >= 1 "
                         f"and lr={lr} > 0")
    neuron_layers(model, layers)  # a clear error before anything else for unprunable models
    clean = clean_subset(data, n_clean, seed)
    args = dict(eps=eps, steps=steps, alpha=alpha, lr=lr, iterations=iterations,
                batch_size=batch_size, n_clean=n_clean, seed=seed, layers=layers)
    if batch_stats:
        args["batch_stats"] = True
    if cache:
        key = _cache_key(model, clean, args)
        hit = _cache_read(key)
        if hit is not None:
            return hit
    device = model_device(model)
    x_all, y_all = clean.x.to(device), clean.y.to(device)
    gen = torch.Generator().manual_seed(seed)
    losses, start = [], time.perf_counter()
    with _Frozen(model, batch_stats), NeuronPerturbation(model, layers) as pert:
        masks = list(pert.mask.values())
        for m in masks:
            m.requires_grad_(True)
        opt = torch.optim.SGD(masks, lr=lr, momentum=0.9)
        order, pos = torch.randperm(len(clean), generator=gen), 0
        for _ in tqdm(range(iterations), desc="ANP masks", disable=not progress, leave=False):
            if pos + batch_size > len(clean) and pos > 0:  # next epoch of the clean images
                order, pos = torch.randperm(len(clean), generator=gen), 0
            idx = order[pos:pos + batch_size].to(device)
            pos += batch_size
            x, y = x_all[idx], y_all[idx]
            n = len(idx)
            if eps > 0 and batch_stats:  # batch statistics: separate passes, no mixing
                _maximise_noise(pert, model, x, y, eps, steps, gen)
                loss_rob = nn.functional.cross_entropy(model(x), y)
                pert.mode = "clean"
                loss = alpha * nn.functional.cross_entropy(model(x), y) + (1 - alpha) * loss_rob
            elif eps > 0:
                _maximise_noise(pert, model, x, y, eps, steps, gen)
                pert.mode, pert.split = "both", n
                logits = model(torch.cat([x, x]))
                loss = (alpha * nn.functional.cross_entropy(logits[:n], y)
                        + (1 - alpha) * nn.functional.cross_entropy(logits[n:], y))
            else:
                pert.mode = "clean"
                loss = alpha * nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0, 1)
            losses.append(loss.item())
        result = ANPResult(pert.values(), losses, time.perf_counter() - start, iterations)
    if cache:
        _cache_write(key, result)
    return result


# ----------------------------------------------------------------------------- a plain reference

def reference_anp_masks(model: nn.Module, data: Data, eps: float = 0.4, steps: int = 1,
                        alpha: float = 0.2, lr: float = 0.2, iterations: int = 2000,
                        batch_size: int = 128, n_clean: int = 500, seed: int = 0,
                        layers=None) -> ANPResult:
    """The same loop written plainly, as the original code does it: new weights ``(m + delta) * w``
    and ``(1 + xi) * b`` substituted into the model with ``torch.func.functional_call``, three
    separate forward passes per iteration and ``.backward()`` through every parameter.

    Kept as the baseline of :func:`benchmark_anp` and as an independent check (same seed, same
    masks up to float rounding). Works on a copy; ``model`` is not touched.
    """
    _check(eps, alpha, steps)
    model = copy_model(model).eval()
    names = neuron_layers(model, layers)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    clean = clean_subset(data, n_clean, seed)
    device = model_device(model)
    x_all, y_all = clean.x.to(device), clean.y.to(device)
    gen = torch.Generator().manual_seed(seed)
    size = {n: _channels(modules[n]) for n in names}
    mask = {n: torch.ones(size[n], device=device, requires_grad=True) for n in names}
    delta = {n: torch.zeros(size[n], device=device, requires_grad=True) for n in names}
    xi = {n: torch.zeros(size[n], device=device, requires_grad=True) for n in names}
    mask_opt = torch.optim.SGD(list(mask.values()), lr=lr, momentum=0.9)
    noise = [*delta.values(), *xi.values()]
    noise_opt = torch.optim.SGD(noise, lr=eps / steps if eps > 0 else 1.0)

    def weights(perturbed: bool) -> dict:
        new = dict(params)
        for n in names:
            w = modules[n].weight
            scale = mask[n] + delta[n] if perturbed else mask[n]
            new[f"{n}.weight"] = w * scale.view((-1,) + (1,) * (w.dim() - 1))
            if modules[n].bias is not None and perturbed:
                new[f"{n}.bias"] = modules[n].bias * (1 + xi[n])
        return new

    def forward(x, perturbed):
        return torch.func.functional_call(model, weights(perturbed), (x,))

    losses, start = [], time.perf_counter()
    order, pos = torch.randperm(len(clean), generator=gen), 0
    for _ in range(iterations):
        if pos + batch_size > len(clean) and pos > 0:
            order, pos = torch.randperm(len(clean), generator=gen), 0
        idx = order[pos:pos + batch_size].to(device)
        pos += batch_size
        x, y = x_all[idx], y_all[idx]
        if eps > 0:
            with torch.no_grad():
                for t in noise:
                    t.copy_(torch.rand(t.shape, generator=gen).to(t) * 2 * eps - eps)
            for _ in range(steps):
                noise_opt.zero_grad()
                (-nn.functional.cross_entropy(forward(x, True), y)).backward()
                for t in noise:
                    t.grad = t.grad.sign()
                noise_opt.step()
                with torch.no_grad():
                    for t in noise:
                        t.clamp_(-eps, eps)
            loss_rob = nn.functional.cross_entropy(forward(x, True), y)
        else:
            loss_rob = torch.zeros((), device=device)
        loss_nat = nn.functional.cross_entropy(forward(x, False), y)
        loss = alpha * loss_nat + (1 - alpha) * loss_rob
        mask_opt.zero_grad()
        loss.backward()
        mask_opt.step()
        with torch.no_grad():
            for m in mask.values():
                m.clamp_(0, 1)
        losses.append(loss.item())
    return ANPResult({n: m.detach().cpu().clone() for n, m in mask.items()}, losses,
                     time.perf_counter() - start, iterations)


# ----------------------------------------------------------------------------- pruning

@dataclass
class Pruned:
    """A pruned copy of a model: which neurons went (layer -> channel indices) and the masks."""

    model: nn.Module
    pruned: dict[str, Tensor]
    masks: dict[str, Tensor]

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.pruned.values())


def _as_masks(masks) -> dict[str, Tensor]:
    return masks.masks if isinstance(masks, ANPResult) else masks


def prune_neurons(model: nn.Module, pruned: dict[str, Tensor]) -> nn.Module:
    """A copy of ``model`` with the weights of the given neurons (layer -> channels) set to 0."""
    out = copy_model(model)
    modules = dict(out.named_modules())
    with torch.no_grad():
        for name, channels in pruned.items():
            if len(channels):
                modules[name].weight[channels.to(modules[name].weight.device)] = 0
    return out


def prune_by_threshold(model: nn.Module, masks, threshold: float = 0.2) -> Pruned:
    """Prune (in a copy) exactly the neurons whose mask value is below ``threshold``."""
    masks = _as_masks(masks)
    check_range("threshold", threshold, 0.0, 1.0)
    pruned = {n: (m < threshold).nonzero().flatten() for n, m in masks.items()}
    return Pruned(prune_neurons(model, pruned), pruned, masks)


def prune_by_count(model: nn.Module, masks, count: int) -> Pruned:
    """Prune (in a copy) the ``count`` neurons with the smallest mask values (ties: layer order)."""
    masks = _as_masks(masks)
    total = sum(len(m) for m in masks.values())
    if int(count) != count or not 0 <= count <= total:
        raise ValueError(f"count={count!r} must be an integer in [0, {total}]")
    flat = torch.cat(list(masks.values()))
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.sort(flat, stable=True).indices[:int(count)]] = True
    pruned, start = {}, 0
    for n, m in masks.items():
        pruned[n] = chosen[start:start + len(m)].nonzero().flatten()
        start += len(m)
    return Pruned(prune_neurons(model, pruned), pruned, masks)


def pruning_curve(model: nn.Module, masks, data: Data, attack, num_classes: int,
                  thresholds=None, counts=None) -> pd.DataFrame:
    """Clean accuracy and attack success after pruning, over ``thresholds`` (or ``counts``).

    One row per point: threshold (or count), neurons pruned, clean_acc, asr.
    """
    masks = _as_masks(masks)
    if (thresholds is None) == (counts is None):
        raise ValueError("give exactly one of thresholds= or counts=")
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
    return fingerprint(model.state_dict(), clean.x, clean.y, args)


def _cache_read(key: str) -> ANPResult | None:
    hit = load_result(cache_dir() / "anp", key)
    if hit is None:
        return None
    state, record = hit
    return ANPResult(state["masks"], state["losses"], record["seconds"], record["iterations"], True)


def _cache_write(key: str, result: ANPResult) -> None:
    save_result(cache_dir() / "anp", key, {"masks": result.masks, "losses": result.losses},
                {"seconds": round(result.seconds, 3), "iterations": result.iterations})


# ----------------------------------------------------------------------------- benchmark

def anp_throughput(model_name: str = "mnist_cnn_bn", in_shape=(1, 28, 28), num_classes: int = 10,
                   iterations: int = 50, batch_size: int = 128, device: str | None = None,
                   seed: int = 0) -> dict:
    """Mask-optimisation throughput (iterations/s) of :func:`anp_masks` vs the plain
    :func:`reference_anp_masks`, on random data, in the same run; and their ratio.

    ``model_name="preact_resnet18", in_shape=(3, 32, 32)`` on a GPU measures the paper's setting.
    """
    from ..models import build_model
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(model_name, in_shape, num_classes, seed=seed).to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    n = max(batch_size, 256)
    data = Data(torch.rand(n, *in_shape, generator=gen), torch.randint(0, num_classes, (n,), generator=gen))
    kw = dict(iterations=iterations, batch_size=batch_size, n_clean=n, seed=seed)
    anp_masks(model, data, progress=False, **{**kw, "iterations": 3})  # warm-up
    reference_anp_masks(model, data, **{**kw, "iterations": 3})

    def timed(fn, **extra):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(model, data, **kw, **extra)
        if device == "cuda":
            torch.cuda.synchronize()
        return iterations / (time.perf_counter() - start)

    ours = timed(anp_masks, progress=False)
    ref = timed(reference_anp_masks)
    return {"model": model_name, "device": device, "batch_size": batch_size,
            "iterations": iterations, "anp_it_per_s": round(ours, 2),
            "reference_it_per_s": round(ref, 2), "speedup": round(ours / ref, 2),
            "seconds_for_2000_iterations": round(2000 / ours, 1)}


def benchmark_anp(iterations: int = 30) -> dict:
    """``python -m fplab benchmark``: ANP mask-optimisation throughput (iterations/s) of this
    implementation and of the plain reference loop, in the same run, and their ratio: for the
    fast profile's CNN on the CPU and, when a GPU is present, for PreAct-ResNet-18 at batch 128
    (the paper's setting; target: 2000 iterations in <= 60 s)."""
    out = {}
    cpu = anp_throughput("mnist_cnn_bn", (1, 28, 28), iterations=iterations, device="cpu")
    out.update({f"cpu mnist_cnn_bn {k}": v for k, v in cpu.items()
                if k not in ("model", "device")})
    if torch.cuda.is_available():
        gpu = anp_throughput("preact_resnet18", (3, 32, 32), iterations=max(iterations, 50),
                             device="cuda")
        out.update({f"cuda preact_resnet18 {k}": v for k, v in gpu.items()
                    if k not in ("model", "device")})
    return out
